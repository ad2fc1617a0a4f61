"""Storage: the run pool (SQLite), the teacher-call cache and the FAISS index."""
