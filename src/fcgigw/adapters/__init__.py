"""fcgigw.adapters."""
