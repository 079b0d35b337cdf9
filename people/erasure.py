"""A person's erasure: everything the service holds about them goes with their row, whichever path
deletes it (people.services.person_delete, the admin, a queryset's delete()).

``person_erase`` runs inside the deleting transaction, before the row goes: it sends
people.hooks.person_erasing (each app erases its own rows and files and returns counts), notes the
person's photo and thumbnail files for deletion after commit, scrubs the admin's log of their name
and bumps the index version (every process drops their faces from its index). The counts go into the
``person.delete`` audit record: ids and counts, never names."""

from __future__ import annotations

from django.db import transaction

from people.files import delete_files, face_files
from people.hooks import person_erasing
from people.index_log import index_person_removed
from people.models import Face, Person

# Set on the instance by person_erase: the pre_delete receiver then knows the erasure has been done.
ERASED_FLAG = "_erasure_done"


def merge_counts(into: dict[str, int], counts) -> dict[str, int]:
    """Add a receiver's counts ({name: int}) into ``into``; anything else a receiver returns is ignored."""
    if isinstance(counts, dict):
        for key, value in counts.items():
            if isinstance(key, str) and isinstance(value, int) and not isinstance(value, bool):
                into[key] = into.get(key, 0) + value
    return into


def person_erase(*, person: Person) -> dict[str, int]:
    """Erase what every app holds about ``person`` except the row itself (the caller deletes it in the
    same transaction); returns the counts of what was removed. A receiver that raises rolls the whole
    deletion back: an erasure is whole or not at all."""
    with transaction.atomic():
        faces = list(Face.objects.filter(person=person))
        files = face_files(faces)
        storage = Face._meta.get_field("image").storage
        folders = [(storage, f"faces/{person.pk}"), (storage, f"thumbs/{person.pk}")]
        removed = {"faces": len(faces), "photos": sum(1 for f in faces if f.image),
                   "thumbnails": sum(1 for f in faces if f.thumbnail)}
        for _receiver, counts in person_erasing.send(sender=Person, person=person):
            merge_counts(removed, counts)
        removed["admin_log_entries"] = _scrub_admin_log(person)
        index_person_removed(person.pk)
        setattr(person, ERASED_FLAG, True)
        transaction.on_commit(lambda: delete_files(files, folders=folders))
    return removed


def _scrub_admin_log(person: Person) -> int:
    """The admin's history names the person (its object_repr is str(person)): the entries stay, as
    the record of what was done, under the person's id only."""
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    content_type = ContentType.objects.get_for_model(Person)
    return LogEntry.objects.filter(content_type=content_type, object_id=str(person.pk)).update(
        object_repr=f"erased person {person.pk}", change_message="")


def erase_on_delete(sender, instance: Person, **kwargs) -> None:
    """pre_delete of Person: a deletion that did not go through people.services.person_delete (a
    queryset, the shell) erases all the same, and leaves its audit record."""
    if getattr(instance, ERASED_FLAG, False):
        return
    from core.audit.services import audit_record

    removed = person_erase(person=instance)
    audit_record(actor=None, action="person.delete", target_type="person", target_ids=[instance.pk],
                 details={"removed": removed, "path": "delete"})
