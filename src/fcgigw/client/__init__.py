"""fcgigw.client."""
