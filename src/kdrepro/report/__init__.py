"""Rendering: tables (CSV, Markdown, LaTeX), figures (PNG, PDF) and the claims report."""
