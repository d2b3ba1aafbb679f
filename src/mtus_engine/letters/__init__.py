"""Reading IMR letters and progress notes into cases (the first stage of the data flow)."""
