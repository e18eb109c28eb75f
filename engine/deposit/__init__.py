"""Deposit: turning an analysis folder (ELLA's format) into database rows."""
