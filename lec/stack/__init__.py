"""The embedded stack: `lec up`, `lec status`, `lec down`, and the demo main job."""
