"""Receivers connected in CorrectionsConfig.ready(): a person's erasure takes their negatives, and
a negative's crop file goes with its row (after commit) whatever deleted it (API, admin, cascade)."""

from __future__ import annotations

from corrections.models import NegativeFace
from corrections.services import negative_crop_delete, negatives_erase_person
from people.models import Person


def erase_person(sender, person: Person, **kwargs) -> dict[str, int]:
    return {"negatives": negatives_erase_person(person=person)}


def delete_crop(sender, instance: NegativeFace, **kwargs) -> None:
    negative_crop_delete(negative=instance)
