"""HTTP/1.1 reverse proxying: downstream (client) and upstream (server) protocols."""
