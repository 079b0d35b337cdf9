"""Gallery memberships and, per gallery, the slots of its members' faces: the search's filter.

A small gallery keeps its slots as an array and hands FAISS an IDSelectorBatch (a hash set, built
once after each change). A large one keeps a bitmap over every slot instead, changed in place, and
FAISS reads that bitmap directly: building a hash set of 100k ids takes ~30 ms (225 ms for 1M), a
cost a search would pay after every write into the gallery, where wrapping a bitmap is free. The
bitmap costs one bit per slot of the whole index (128 KiB a gallery at 1M faces), hence only for
galleries past BITMAP_MIN faces.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import faiss
import numpy as np
import numpy.typing as npt

IdArray = npt.NDArray[np.int64]
BITMAP_MIN = 2048  # faces; back to an array under a quarter of it, so a gallery does not flip-flop


def _bits(slots: IdArray) -> tuple[IdArray, npt.NDArray[np.uint8]]:
    return slots >> 3, (np.uint8(1) << (slots & 7).astype(np.uint8)).astype(np.uint8)


class SlotSet:
    """The live slots of one gallery. Adds and removes are idempotent (present or absent slots are
    left as they are); ``capacity`` bounds every slot."""

    def __init__(self, slots: IdArray, capacity: int, *, ascending: bool = False) -> None:
        """``ascending``: ``slots`` are known sorted and unique already."""
        self._capacity = capacity
        self._array: IdArray | None = (slots if ascending else np.unique(slots)).astype(np.int64, copy=False)
        self._bitmap: npt.NDArray[np.uint8] | None = None
        self._selector: faiss.IDSelector | None = None
        self._slots: IdArray | None = None
        self.count = len(self._array)
        self._reshape()

    def __len__(self) -> int:
        return self.count

    def add(self, slots: IdArray) -> None:
        if self._bitmap is None:
            assert self._array is not None
            self._array = np.union1d(self._array, slots).astype(np.int64)
            self.count = len(self._array)
        else:
            fresh = np.unique(slots[~self._test(slots)])
            byte, bit = _bits(fresh)
            np.bitwise_or.at(self._bitmap, byte, bit)
            self.count += len(fresh)
        self._changed()

    def remove(self, slots: IdArray) -> None:
        if self._bitmap is None:
            assert self._array is not None
            self._array = self._array[~np.isin(self._array, slots)]
            self.count = len(self._array)
        else:
            gone = np.unique(slots[(slots < self._capacity) & self._test(slots)])
            byte, bit = _bits(gone)
            np.bitwise_and.at(self._bitmap, byte, ~bit)
            self.count -= len(gone)
        self._changed()

    def grow(self, capacity: int) -> None:
        if self._bitmap is not None:
            bitmap = np.zeros((capacity + 7) // 8, dtype=np.uint8)
            bitmap[: len(self._bitmap)] = self._bitmap
            self._bitmap = bitmap  # a new buffer: the old selector points into the old one
            self._selector = None
        self._capacity = capacity

    def selector(self) -> faiss.IDSelector:
        """FAISS's filter for these slots. A bitmap's selector reads the bitmap in place, so it
        stays valid across changes; an array's is rebuilt after each."""
        selector = self._selector
        if selector is None:
            if self._bitmap is not None:
                selector = faiss.IDSelectorBitmap(len(self._bitmap), faiss.swig_ptr(self._bitmap))
            else:
                assert self._array is not None
                selector = faiss.IDSelectorBatch(self._array)
            self._selector = selector
        return selector

    def slots(self) -> IdArray:
        """The slots, ascending (the accelerator's filter)."""
        if self._bitmap is None:
            assert self._array is not None
            return self._array
        slots = self._slots
        if slots is None:
            slots = np.flatnonzero(np.unpackbits(self._bitmap, bitorder="little")).astype(np.int64)
            self._slots = slots
        return slots

    def _test(self, slots: IdArray) -> npt.NDArray[np.bool_]:
        assert self._bitmap is not None
        inside = slots < self._capacity
        byte, bit = _bits(np.where(inside, slots, 0))
        found: npt.NDArray[np.bool_] = inside & ((self._bitmap[byte] & bit) != 0)
        return found

    def _changed(self) -> None:
        self._slots = None
        if self._bitmap is None:
            self._selector = None
        self._reshape()

    def _reshape(self) -> None:
        if self._bitmap is None and self.count >= BITMAP_MIN:
            assert self._array is not None
            mask = np.zeros(self._capacity, dtype=bool)
            mask[self._array] = True
            self._bitmap = np.packbits(mask, bitorder="little")
            self._array, self._selector = None, None
        elif self._bitmap is not None and self.count < BITMAP_MIN // 4:
            self._array = self.slots()
            self._bitmap, self._selector, self._slots = None, None, None


class Galleries:
    """Who is in which gallery (kept for people without faces too: their faces join when they
    come), and each gallery's face slots."""

    def __init__(self, person_galleries: Mapping[int, Iterable[int]] | None, slot_person: IdArray,
                 capacity: int) -> None:
        self._capacity = capacity
        # Tuples, not sets: 56 bytes for one gallery where a set takes 216, times every person.
        self._of_person: dict[int, tuple[int, ...]] = {}
        self._members: dict[int, set[int]] = {}
        for person, galleries in (person_galleries or {}).items():
            chosen = tuple(sorted({int(g) for g in galleries}))
            if chosen:
                self._of_person[int(person)] = chosen
                for gallery in chosen:
                    self._members.setdefault(gallery, set()).add(int(person))
        self._sets: dict[int, SlotSet] = {}
        everyone = np.arange(len(slot_person), dtype=np.int64)
        for gallery, slots in self._by_gallery(everyone, slot_person).items():
            self._sets[gallery] = SlotSet(slots, capacity, ascending=True)

    def _by_gallery(self, slots: IdArray, persons: IdArray) -> dict[int, IdArray]:
        """``slots`` (of faces of ``persons``) grouped by their people's galleries: one sort of
        the memberships, not a pass over the faces per gallery nor set operations per person.
        Ascending slots stay ascending within each gallery (stable sorts)."""
        if not len(slots):
            return {}
        people, inverse = np.unique(persons, return_inverse=True)
        pairs = [(i, g) for i, person in enumerate(people.tolist()) for g in self._of_person.get(person, ())]
        if not pairs:
            return {}
        owner, galleries = np.asarray(pairs, dtype=np.int64).T  # owner: a position in `people`; sorted
        start = np.searchsorted(owner, inverse, side="left")
        per_slot = np.searchsorted(owner, inverse, side="right") - start
        # One row per (slot, membership): the slot repeated, and its membership's position in
        # `galleries` (the slot's first membership plus its rank among them).
        rows = np.repeat(np.arange(len(slots)), per_slot)
        firsts = np.repeat(start - (np.cumsum(per_slot) - per_slot), per_slot)
        gallery_of = galleries[firsts + np.arange(len(rows))]
        order = np.argsort(gallery_of, kind="stable")
        gallery_of, grouped = gallery_of[order], slots[rows[order]]
        keys, bounds = np.unique(gallery_of, return_index=True)
        bounds = np.append(bounds, len(grouped))
        return {int(g): grouped[bounds[i]:bounds[i + 1]] for i, g in enumerate(keys.tolist())}

    def get(self, gallery_id: int) -> SlotSet | None:
        return self._sets.get(gallery_id)

    def size(self, gallery_id: int) -> int:
        found = self._sets.get(gallery_id)
        return 0 if found is None else found.count

    def grow(self, capacity: int) -> None:
        self._capacity = capacity
        for slot_set in self._sets.values():
            slot_set.grow(capacity)

    def add_faces(self, slots: IdArray, persons: IdArray) -> None:
        for gallery, own in self._by_gallery(slots, persons).items():
            self._change(gallery, own, add=True)

    def remove_faces(self, slots: IdArray, persons: IdArray) -> None:
        for gallery, own in self._by_gallery(slots, persons).items():
            self._change(gallery, own, add=False)

    def _change(self, gallery: int, slots: IdArray, *, add: bool) -> None:
        slot_set = self._sets.get(gallery)
        if add:
            if slot_set is None:
                self._sets[gallery] = SlotSet(slots, self._capacity)
            else:
                slot_set.add(slots)
        elif slot_set is not None:
            slot_set.remove(slots)

    def set_person(self, person: int, galleries: Iterable[int], slots: IdArray) -> None:
        """``person``'s memberships become ``galleries``; ``slots``: the person's live faces."""
        new = {int(g) for g in galleries}
        old = set(self._of_person.get(person, ()))
        for gallery in old - new:
            self._change(gallery, slots, add=False)
            self._leave(gallery, person)
        for gallery in new - old:
            self._members.setdefault(gallery, set()).add(person)
            if len(slots):
                self._change(gallery, slots, add=True)
        if new:
            self._of_person[person] = tuple(sorted(new))
        else:
            self._of_person.pop(person, None)

    def _leave(self, gallery: int, person: int) -> None:
        members = self._members.get(gallery)
        if members is not None:
            members.discard(person)
            if not members:
                del self._members[gallery]
                self._sets.pop(gallery, None)

    def remove_people(self, persons: Iterable[int]) -> None:
        """Forget the memberships of ``persons`` (their faces removed already)."""
        for person in persons:
            for gallery in self._of_person.pop(int(person), ()):
                self._leave(gallery, int(person))

    def remove_gallery(self, gallery: int) -> None:
        for person in self._members.pop(gallery, set()):
            rest = tuple(g for g in self._of_person.get(person, ()) if g != gallery)
            if rest:
                self._of_person[person] = rest
            else:
                self._of_person.pop(person, None)
        self._sets.pop(gallery, None)
