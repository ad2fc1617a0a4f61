"""Jinja2 templates for every teacher request, shipped as package data."""
