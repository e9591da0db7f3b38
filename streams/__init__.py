"""Stream processors (Faust): parse, validate, normalise and sign-convert readings."""
