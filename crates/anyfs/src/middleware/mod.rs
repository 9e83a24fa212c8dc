//! Middleware: layers that wrap a backend and are backends themselves.
