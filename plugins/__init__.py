"""Built-in plugins, each loaded through the `lionloop` entry-point group like a third-party one."""
