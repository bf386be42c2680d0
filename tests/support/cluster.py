"""Local control-plane fixtures (filled in by the control-plane harness)."""
