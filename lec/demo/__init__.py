"""The demo community (real SimBench profiles) and a traffic generator that sends like real suppliers."""
