"""One module per DVC stage."""
