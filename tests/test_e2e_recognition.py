"""Enrol people/train, recognise people/test: everyone named, the stranger unknown."""

import pytest

from conftest import TEST, upload

EXPECTED = {
    "alex_lacamoire1.jpg": ["alex_lacamoire"],
    "johnsnow_test1.jpg": ["kit_harington"],
    "obama1.jpg": ["obama"],
}


@pytest.mark.parametrize("filename,names", sorted(EXPECTED.items()))
def test_single_faces_are_named(enrolled, user_client, filename, names):
    response = user_client.post("/api/faces/recognize/", {"image": upload(TEST / filename)})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert [f["label"] for f in body["faces"]] == names
    assert body["top_match"]["person_name"] == names[0]
    assert body["top_match"]["is_match"] is True
    assert 0.5 < body["top_match"]["confidence"] <= 1.0


def test_kit_with_rose_names_both(enrolled, user_client):
    body = user_client.post("/api/faces/recognize/", {"image": upload(TEST / "kit_with_rose.jpg")}).json()
    assert sorted(f["label"] for f in body["faces"]) == ["kit_harington", "rose_leslie"]


def test_obama_and_biden_and_a_stranger(enrolled, user_client):
    body = user_client.post(
        "/api/faces/recognize/", {"image": upload(TEST / "obama_and_biden.jpg"), "return_all_matches": "true"}
    ).json()
    labels = sorted(f["label"] for f in body["faces"])
    assert labels == ["biden", "obama", "unknown"]
    stranger = next(f for f in body["faces"] if f["label"] == "unknown")
    assert stranger["top_match"] is None
    # The nearest person is still reported with return_all_matches, above the threshold.
    assert stranger["matches"] and stranger["matches"][0]["distance"] > 0.6
    assert all(not m["is_match"] and m["confidence"] < 0.5 for m in stranger["matches"])
