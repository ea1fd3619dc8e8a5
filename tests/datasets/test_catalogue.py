"""The catalogue: dataset names and aliases, each benchmark's domains and tasks, and the class lists."""

import datasets
from datasets.office31 import CLASSES as OFFICE31_CLASSES
from datasets.officehome import CLASSES as OFFICE_HOME_CLASSES
from datasets.visda2017 import CLASSES as VISDA_CLASSES


def test_domains_and_tasks():
    assert datasets.canonical_name("VisDA-2017") == datasets.canonical_name("visda") == "visda2017"
    assert datasets.domains("office31") == datasets.domains("synthetic") == ["A", "W", "D"]
    assert datasets.tasks("Office-31") == [("A", "W"), ("D", "W"), ("W", "D"), ("A", "D"), ("D", "A"), ("W", "A")]
    assert datasets.tasks("synthetic") == datasets.tasks("office31")
    assert datasets.domains("OFFICE_HOME") == ["Ar", "Cl", "Pr", "Rw"]
    home = datasets.tasks("officehome")
    assert len(home) == len(set(home)) == 12 and home[:3] == [("Ar", "Cl"), ("Ar", "Pr"), ("Ar", "Rw")]
    assert datasets.domains("VisDA-2017") == ["Synthetic", "Real"] and datasets.tasks("visda") == [
        ("Synthetic", "Real")
    ]
    for name in ("cub200", "aircraft", "cars"):
        assert datasets.domains(name) == datasets.tasks(name) == []


def test_class_lists():
    assert len(OFFICE31_CLASSES) == 31 and list(OFFICE31_CLASSES) == sorted(OFFICE31_CLASSES)
    assert len(OFFICE_HOME_CLASSES) == 65 and list(OFFICE_HOME_CLASSES) == sorted(OFFICE_HOME_CLASSES)
    assert len(VISDA_CLASSES) == 12 and list(VISDA_CLASSES) == sorted(VISDA_CLASSES)
