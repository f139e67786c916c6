"""Pure personalisation: a patient snapshot in, a weekly plan decision out (no I/O)."""
