"""Configuration: compose ``conf/`` like the command line, pre-check it, and check what it may instantiate."""
