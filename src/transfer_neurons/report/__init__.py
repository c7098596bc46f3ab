"""The study report: results.json, report.html with figures inline, and the claims table."""

from .claims import evaluate_claims
from .render import collect_results, render_html, write_report

__all__ = ["collect_results", "evaluate_claims", "render_html", "write_report"]
