"""Job title -> seniority and function (services/enrich/titles.py): a table of real titles."""

from __future__ import annotations

import pytest

from services.enrich.titles import function_of, seniority_of

pytestmark = pytest.mark.unit

TITLES = [
    ("VP Sales", "vp", "sales"),
    ("VP of Sales Operations", "vp", "sales"),
    ("Vice President, Engineering", "vp", "engineering"),
    ("SVP Marketing", "vp", "marketing"),
    ("Head of Marketing", "vp", "marketing"),
    ("CTO", "c-level", "engineering"),
    ("CEO & Co-Founder", "c-level", "executive"),
    ("Chief Revenue Officer", "c-level", "sales"),
    ("Chief Marketing Officer", "c-level", "marketing"),
    ("CFO", "c-level", "finance"),
    ("Geschäftsführer", "c-level", "executive"),
    ("Directeur Commercial", "director", "sales"),
    ("Director of IT", "director", "it"),
    ("Senior Director, Product Management", "director", "product"),
    ("Marketing Manager", "manager", "marketing"),
    ("Engineering Team Lead", "manager", "engineering"),
    ("Jefe de Ventas", "manager", "sales"),
    ("HR Business Partner", "individual contributor", "hr"),
    ("Sr. Software Engineer", "individual contributor", "engineering"),
    ("Account Executive", "individual contributor", "sales"),
    ("Data Analyst", "individual contributor", "data"),
    ("Financial Controller", "individual contributor", "finance"),
    ("Executive Assistant to the CEO", "individual contributor", "executive"),
    ("Marketing Intern", "student/intern", "marketing"),
    ("Computer Science Student", "student/intern", "engineering"),
    ("Werkstudent Vertrieb", "student/intern", "sales"),
    ("Stagiaire marketing", "student/intern", "marketing"),
    ("Office Plant Whisperer", "individual contributor", "other"),
]


@pytest.mark.parametrize(("title", "seniority", "function"), TITLES)
def test_title_mapping(title: str, seniority: str, function: str) -> None:
    assert (seniority_of(title), function_of(title)) == (seniority, function)


@pytest.mark.parametrize("title", [None, "", "   "])
def test_no_title_no_guess(title: str | None) -> None:
    assert seniority_of(title) is None
    assert function_of(title) is None
