"""``droplab verify``: reference checks of the whole pipeline against published numbers."""
