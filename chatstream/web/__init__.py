"""The bundled chat page."""
