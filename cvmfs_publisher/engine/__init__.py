"""The native engine: transactions, catalog trees, reading and verifying repositories."""
