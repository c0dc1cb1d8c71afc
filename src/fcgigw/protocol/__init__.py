"""fcgigw.protocol."""
