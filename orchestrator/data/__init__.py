"""Data: source adapters -> one table, fold assignment, image reading, transforms."""
