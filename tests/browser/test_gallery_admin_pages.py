"""The gallery admin pages of issue 11 in a real Chromium against a real ASGI server (uvicorn), signed
in as staff: the people's "Possible duplicates" page (a duplicate planted with real photos through
the enrolment service), the faces' quality columns, sorting and filter, an unknown cluster named as a
new person through its admin action, and the negatives' list. Every image the pages show is checked
to have loaded in the browser (naturalWidth > 0), and the console to hold no error (no Content-
Security-Policy violation). Screenshots go to test-artifacts/ (or $TEST_ARTIFACTS)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageFilter
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from conftest import MISC, TRAIN, upload

# Skips this module where Debian's chromium is missing.
from tests.browser.pages import PASSWORD, console, create_login, page_server, screenshot
from tests.processes import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]  # committed: the server must see it

STAFF = "gallery-admin"
OBAMA = [TRAIN / "obama" / "obama.jpg", TRAIN / "obama" / "obama2.jpg", MISC / "obama3.jpg"]


@pytest.fixture
def media(settings, tmp_path) -> Path:
    root = tmp_path / "media"
    settings.MEDIA_ROOT = str(root)
    return root


# ---- what the pages are checked for ------------------------------------------------------------------

class Console:
    """The page's console over the whole test: Selenium hands each entry once, so they are kept."""

    def __init__(self, driver) -> None:
        self.driver, self.lines = driver, []

    def read(self) -> str:
        text = console(self.driver)
        if text and not text.startswith("(no console log"):
            self.lines.extend(text.splitlines())
        return "\n".join(self.lines)

    def errors(self) -> list[str]:
        """Errors and CSP reports; not the 404 of the /favicon.ico that Chromium asks for by itself
        (the service has none, and no page links one)."""
        self.read()
        return [line for line in self.lines
                if (line.startswith("SEVERE") or "Content Security Policy" in line or "Refused to" in line)
                and "/favicon.ico " not in line]


def sign_in(driver, base: str, next_path: str = "/admin/") -> None:
    driver.get(f"{base}/admin/login/?next={next_path}")
    driver.find_element(By.ID, "id_username").send_keys(STAFF)
    driver.find_element(By.ID, "id_password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "user-tools"))


def wide(driver, selector: str) -> None:
    """Room for a wide changelist in the screenshot: the admin's app sidebar folded (remembered by
    the page), the table scrolled to ``selector``."""
    if driver.find_element(By.ID, "nav-sidebar").is_displayed():
        driver.find_element(By.ID, "toggle-nav-sidebar").click()
        WebDriverWait(driver, 10).until(lambda d: not d.find_element(By.ID, "nav-sidebar").is_displayed())
    driver.execute_script("document.querySelector(arguments[0]).scrollIntoView({inline: 'center'})", selector)


def images(driver, selector: str) -> list[dict]:
    return driver.execute_script("""
        return [...document.querySelectorAll(arguments[0])].map(img => ({
            src: img.getAttribute('src'), loaded: img.complete && img.naturalWidth > 0,
            width: img.naturalWidth}));""", selector)


def all_loaded(driver, selector: str, count: int, detail) -> list[dict]:
    """Waits until ``count`` images (at least) match ``selector`` and every one has loaded."""
    wait_for(lambda: len(found := images(driver, selector)) >= count and all(i["loaded"] for i in found),
             timeout=20, what=f"{count} images {selector} loaded", detail=lambda: f"{images(driver, selector)} "
             f"{detail()}")
    return images(driver, selector)


def column(driver, name: str) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#result_list tbody .field-' + arguments[0])]"
        ".map(cell => cell.textContent.trim())", name)  # the first column is a th, the others td


def number(text: str) -> float:
    return float(text.replace("°", "").replace("%", "").strip())


# ---- the scenes ---------------------------------------------------------------------------------

def enrol(name: str, *photos: Path | SimpleUploadedFile, force: bool = False):
    from people.services import face_enroll, person_create

    person = person_create(name=name)
    outcomes = face_enroll(person=person, uploads=[p if isinstance(p, SimpleUploadedFile) else upload(p)
                                                   for p in photos], force=force)
    assert all(o.error is None and o.face is not None for o in outcomes), [o.error for o in outcomes]
    return person, [o.face for o in outcomes]


def altered(path: Path, name: str, *, blur: float = 0.0, scale: float = 1.0) -> SimpleUploadedFile:
    """A photo blurred or scaled down, as a JPEG upload: a face the quality gate refuses."""
    with Image.open(path) as photo:
        image = photo.convert("RGB")
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    if scale != 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=92)
    return SimpleUploadedFile(name, out.getvalue(), content_type="image/jpeg")


def kept_sighting(engine, path: Path, *, crop: bool = True):
    """An unknown face kept by a recognition (sighting_record), clustered: a real embedding and crop."""
    import numpy as np

    from face_engine.live.appearances import crop_around, sharpness
    from unknowns.services import sighting_cluster, sighting_record

    data = path.read_bytes()
    face = engine.analyze_bytes([data])[0].largest
    out = io.BytesIO()
    Image.fromarray(crop_around(engine.decode(data), face.box)).save(out, format="JPEG", quality=90)
    sighting = sighting_record(embedding=np.asarray(face.embedding, dtype="<f4"),
                               crop_jpeg=out.getvalue() if crop else None, box=face.box.as_dict(),
                               face_size=int(math.sqrt(face.box.area)), sharpness=round(sharpness(face.chip), 2),
                               source_name="api:test")
    sighting_cluster(sighting)
    sighting.refresh_from_db()
    return sighting


# ---- 1. People: possible duplicates -----------------------------------------------------------------

@pytest.fixture
def duplicates_scene(db, engine, media):
    create_login(STAFF, is_staff=True, is_superuser=True)
    # The same man under two names: a photo of his enrolled again (forced past the duplicate check).
    barack, _ = enrol("Barack Obama", *OBAMA[:2])
    b_obama, _ = enrol("B. Obama", OBAMA[1], force=True)
    # The same woman under two names, from her two photos: a pair further apart (0.37).
    rose, _ = enrol("Rose Leslie", TRAIN / "rose_leslie" / "img1.jpg")
    rose_l, _ = enrol("R. Leslie", TRAIN / "rose_leslie" / "img2.jpg", force=True)
    enrol("Joe Biden", TRAIN / "biden" / "biden.jpg")  # nobody's duplicate
    return {"barack": barack, "b_obama": b_obama, "rose": rose, "rose_l": rose_l}


def duplicate_rows(driver) -> list[dict]:
    return driver.execute_script("""
        return [...document.querySelectorAll('#duplicates-table tbody tr')].map(tr => ({
            cells: tr.cells.length, distance: tr.cells[0].textContent.trim(),
            names: [...tr.querySelectorAll('a')].map(a => a.textContent.trim()),
            text: tr.textContent.replace(/\\s+/g, ' ').trim()}));""")


def test_the_possible_duplicates_page_shows_the_planted_pairs(duplicates_scene, settings, tmp_path, chromium):
    from people.duplicates import duplicate_scan

    scan = duplicate_scan()
    expected = {frozenset((p.person_a_name, p.person_b_name)): p.distance for p in scan.pairs}
    assert set(expected) == {frozenset({"Barack Obama", "B. Obama"}), frozenset({"Rose Leslie", "R. Leslie"})}
    obama_distance = expected[frozenset({"Barack Obama", "B. Obama"})]
    rose_distance = expected[frozenset({"Rose Leslie", "R. Leslie"})]
    assert obama_distance < 0.05 < 0.3 < rose_distance < settings.FACE_ENGINE.match_threshold, expected

    log = Console(chromium)
    with page_server(settings, tmp_path) as (base, process):
        def detail():
            return f"{log.read()} {process.log_tail()}"

        sign_in(chromium, base, "/admin/people/person/")
        assert chromium.current_url == f"{base}/admin/people/person/", detail()
        # The changelist's object tools (drawn in capitals by the admin's CSS: the DOM's text is read).
        chromium.find_element(By.XPATH, "//ul[contains(@class, 'object-tools')]"
                                        "//a[normalize-space()='Possible duplicates']").click()
        WebDriverWait(chromium, 20).until(lambda d: d.find_elements(By.ID, "duplicates-table"))
        assert chromium.current_url == f"{base}/admin/people/person/duplicates/"
        rows = duplicate_rows(chromium)
        assert [frozenset(r["names"]) for r in rows] == [frozenset({"Barack Obama", "B. Obama"}),
                                                         frozenset({"Rose Leslie", "R. Leslie"})], rows
        assert [r["distance"] for r in rows] == [f"{obama_distance:.3f}", f"{rose_distance:.3f}"], rows
        heading = chromium.find_element(By.CSS_SELECTOR, "#content-main h2").text
        assert heading.startswith("2 pairs of people with faces within 0.6"), heading
        # Both faces of each pair: thumbnails served to the signed-in staff, loaded by the browser.
        thumbs = all_loaded(chromium, "#duplicates-table img", 4, detail)
        assert len(thumbs) == 4 and all("/thumbnail/" in t["src"] for t in thumbs), thumbs
        screenshot(chromium, "admin-duplicates.png")

        # A lower threshold: the near-identical pair only.
        field = chromium.find_element(By.ID, "id_threshold")
        field.clear()
        field.send_keys("0.2")
        chromium.find_element(By.CSS_SELECTOR, "#duplicates-form input[type=submit]").click()
        WebDriverWait(chromium, 20).until(lambda d: "threshold=0.2" in d.current_url)
        rows = duplicate_rows(chromium)
        assert [frozenset(r["names"]) for r in rows] == [frozenset({"Barack Obama", "B. Obama"})], rows
        assert chromium.find_element(By.CSS_SELECTOR, "#content-main h2").text.startswith(
            "1 pair of people with faces within 0.2")
        assert chromium.find_element(By.ID, "id_threshold").get_attribute("value") == "0.2"
        all_loaded(chromium, "#duplicates-table img", 2, detail)
        # A threshold of 0 is refused by the form, which says why.
        field = chromium.find_element(By.ID, "id_threshold")
        field.clear()
        field.send_keys("0")
        chromium.find_element(By.CSS_SELECTOR, "#duplicates-form input[type=submit]").click()
        WebDriverWait(chromium, 20).until(lambda d: "threshold=0&" in d.current_url)
        assert "Must be more than 0" in chromium.find_element(By.ID, "duplicates-form").text
        assert not chromium.find_elements(By.ID, "duplicates-table")
        # A pair's name opens that person.
        chromium.find_element(By.ID, "id_threshold").clear()
        chromium.find_element(By.CSS_SELECTOR, "#duplicates-form input[type=submit]").click()
        WebDriverWait(chromium, 20).until(lambda d: len(duplicate_rows(d)) == 2)
        chromium.find_element(By.LINK_TEXT, "R. Leslie").click()
        WebDriverWait(chromium, 20).until(
            lambda d: d.current_url.endswith(f"/admin/people/person/{duplicates_scene['rose_l'].pk}/change/"))
        assert log.errors() == [], detail()


# ---- 2. Faces: quality columns, sorting, filter -------------------------------------------------------

@pytest.fixture
def faces_scene(db, engine, media):
    create_login(STAFF, is_staff=True, is_superuser=True)
    obama, faces = enrol("Barack Obama", TRAIN / "obama" / "obama.jpg")
    _, forced = enrol("Obama (poor photos)", altered(OBAMA[1], "blurred.jpg", blur=8),
                      altered(OBAMA[0], "tiny.jpg", scale=0.15), force=True)
    _, more = enrol("Kit Harington", TRAIN / "kit_harington" / "john1.jpeg")
    _, biden = enrol("Joe Biden", TRAIN / "biden" / "biden.jpg")
    blurred, tiny = forced
    for face in (blurred, tiny):
        face.refresh_from_db()
    assert blurred.quality_reasons == ["blurry"] and tiny.quality_reasons == ["face_too_small"], (
        blurred.quality_reasons, tiny.quality_reasons)
    return {"good": [*faces, *more, *biden], "blurred": blurred, "tiny": tiny}


def face_ids(driver) -> list[int]:
    return [int(text) for text in column(driver, "id")]


def test_the_faces_changelist_shows_sorts_and_filters_by_quality(faces_scene, settings, tmp_path, chromium):
    log = Console(chromium)
    everyone = {f.pk for f in faces_scene["good"]} | {faces_scene["blurred"].pk, faces_scene["tiny"].pk}
    with page_server(settings, tmp_path) as (base, process):
        def detail():
            return f"{log.read()} {process.log_tail()}"

        sign_in(chromium, base, "/admin/people/face/")
        WebDriverWait(chromium, 20).until(lambda d: d.find_elements(By.ID, "result_list"))
        headers = chromium.execute_script(
            "return [...document.querySelectorAll('#result_list thead th')].map(th => th.textContent.trim())")
        for title in ("quality", "size", "sharpness", "yaw", "pitch", "roll", "score", "cut off"):
            assert title.upper() in [h.upper() for h in headers], headers
        assert set(face_ids(chromium)) == everyone
        quality = dict(zip(face_ids(chromium), column(chromium, "quality"), strict=True))
        assert quality[faces_scene["blurred"].pk] == "blurry (forced)"
        assert quality[faces_scene["tiny"].pk] == "face_too_small (forced)"
        assert {quality[f.pk] for f in faces_scene["good"]} == {"ok"}, quality
        assert all(text != "-" for text in column(chromium, "sharpness")), column(chromium, "sharpness")
        all_loaded(chromium, "#result_list td.field-thumb img", len(everyone), detail)

        # Sorting by a quality column: its header, ascending, then (clicked again) descending.
        chromium.find_element(By.CSS_SELECTOR, "#result_list th.column-size div.text a").click()
        WebDriverWait(chromium, 20).until(lambda d: "o=" in d.current_url)
        sizes = [number(t) for t in column(chromium, "size")]
        assert sizes == sorted(sizes) and len(sizes) == len(everyone), sizes
        assert face_ids(chromium)[0] == faces_scene["tiny"].pk
        first = chromium.current_url
        chromium.find_element(By.CSS_SELECTOR, "#result_list th.column-size div.text a").click()
        WebDriverWait(chromium, 20).until(lambda d: d.current_url != first)
        sizes = [number(t) for t in column(chromium, "size")]
        assert sizes == sorted(sizes, reverse=True), sizes
        chromium.find_element(By.CSS_SELECTOR, "#result_list th.column-sharpness div.text a").click()
        WebDriverWait(chromium, 20).until(
            lambda d: "sorted" in d.find_element(By.CSS_SELECTOR, "#result_list th.column-sharpness")
            .get_attribute("class"))
        sharp = [number(t) for t in column(chromium, "sharpness")]
        assert sorted(sharp) in (sharp, sharp[::-1]) and len(sharp) == len(everyone), sharp
        wide(chromium, "#result_list th.column-size")
        screenshot(chromium, "admin-faces-quality.png")

        # The quality filter, from the sidebar.
        def choose(label: str) -> list[int]:
            chromium.find_element(
                By.XPATH, "//*[@id='changelist-filter']//details[@data-filter-title='quality']"
                          f"//a[normalize-space()='{label}']").click()
            WebDriverWait(chromium, 20).until(lambda d: "quality=" in d.current_url or label == "All")
            return face_ids(chromium)

        assert choose("blurry") == [faces_scene["blurred"].pk], detail()
        assert choose("face too small") == [faces_scene["tiny"].pk]
        assert set(choose("fails something")) == {faces_scene["blurred"].pk, faces_scene["tiny"].pk}
        assert set(choose("passes")) == {f.pk for f in faces_scene["good"]}
        assert set(choose("forced")) == {faces_scene["blurred"].pk, faces_scene["tiny"].pk}
        assert choose("extreme pose") == []
        # The filter and the sort together.
        choose("passes")
        chromium.find_element(By.CSS_SELECTOR, "#result_list th.column-size div.text a").click()
        WebDriverWait(chromium, 20).until(lambda d: "o=" in d.current_url and "quality=ok" in d.current_url)
        sizes = [number(t) for t in column(chromium, "size")]
        assert sizes == sorted(sizes) and len(sizes) == len(faces_scene["good"]), sizes
        assert log.errors() == [], detail()


# ---- 3. Unknown identities: a cluster named as a new person --------------------------------------------

@pytest.fixture
def unknowns_scene(db, engine, media):
    create_login(STAFF, is_staff=True, is_superuser=True)
    sightings = [kept_sighting(engine, path) for path in OBAMA]
    clusters = {s.cluster_id for s in sightings}
    assert len(clusters) == 1 and None not in clusters, clusters
    return {"cluster": sightings[0].cluster, "sightings": sightings}


def test_an_unknown_cluster_shows_its_faces_and_is_named_in_the_admin(unknowns_scene, settings, tmp_path,
                                                                     chromium):
    from people.models import Face, Person
    from unknowns.models import UnknownCluster

    cluster = unknowns_scene["cluster"]
    log = Console(chromium)
    with page_server(settings, tmp_path) as (base, process):
        def detail():
            return f"{log.read()} {process.log_tail()}"

        sign_in(chromium, base, "/admin/unknowns/unknowncluster/")
        WebDriverWait(chromium, 20).until(lambda d: d.find_elements(By.ID, "result_list"))
        all_loaded(chromium, "#result_list td.field-best_faces img", 3, detail)
        screenshot(chromium, "admin-unknown-clusters.png")

        # The cluster's page: its best crops and its sightings' crops load.
        chromium.get(f"{base}/admin/unknowns/unknowncluster/{cluster.pk}/change/")
        best = all_loaded(chromium, ".field-best_faces_large img", 3, detail)
        assert all(f"/sightings/{s.pk}/crop/" in "".join(b["src"] for b in best)
                   for s in unknowns_scene["sightings"]), best
        all_loaded(chromium, ".inline-group td.field-thumb img", 3, detail)
        assert "open" in chromium.find_element(By.CSS_SELECTOR, ".field-state").text.lower()
        screenshot(chromium, "admin-unknown-cluster.png")

        # The "name" action: select the cluster in the list, the form with its best faces, a new name.
        chromium.get(f"{base}/admin/unknowns/unknowncluster/")
        chromium.find_element(By.CSS_SELECTOR, f"input.action-select[value='{cluster.pk}']").click()
        Select(chromium.find_element(By.NAME, "action")).select_by_value("name_cluster")
        chromium.find_element(By.CSS_SELECTOR, "#changelist-form button[name=index]").click()
        WebDriverWait(chromium, 20).until(lambda d: d.find_elements(By.ID, "id_name"))
        assert chromium.find_element(By.TAG_NAME, "h1").text == f"Name {cluster}"
        all_loaded(chromium, "#content-main img", 3, detail)
        screenshot(chromium, "admin-unknown-name.png")
        chromium.find_element(By.ID, "id_name").send_keys("Barack Obama")
        chromium.find_element(By.CSS_SELECTOR, "#content-main input[type=submit][value=Name]").click()
        # The server encodes the crops (it loads the engine the first time): give it time.
        WebDriverWait(chromium, 120).until(lambda d: d.find_elements(By.CSS_SELECTOR, "ul.messagelist li"))
        message = chromium.find_element(By.CSS_SELECTOR, "ul.messagelist li")
        assert "success" in message.get_attribute("class"), (message.text, detail())
        assert message.text.startswith(f"{cluster} named Barack Obama: 3 face(s) enrolled"), message.text

        person = Person.objects.get(name="Barack Obama")
        assert Face.objects.filter(person=person, status=Face.Status.ENCODED).count() == 3
        cluster.refresh_from_db()
        assert cluster.state == UnknownCluster.State.NAMED and cluster.person_id == person.pk

        # The list and the cluster's page say so.
        assert [s.lower() for s in column(chromium, "state")] == ["named"], column(chromium, "state")
        assert column(chromium, "person") == ["Barack Obama"]
        chromium.get(f"{base}/admin/unknowns/unknowncluster/{cluster.pk}/change/")
        assert "named" in chromium.find_element(By.CSS_SELECTOR, ".field-state").text.lower()
        assert "Barack Obama" in chromium.find_element(By.CSS_SELECTOR, ".field-person").text
        all_loaded(chromium, ".field-best_faces_large img", 3, detail)
        # The new person's faces: thumbnails made from the crops, loaded.
        chromium.get(f"{base}/admin/people/face/?person__id__exact={person.pk}")
        all_loaded(chromium, "#result_list td.field-thumb img", 3, detail)
        assert log.errors() == [], detail()


# ---- 4. Corrections: the negatives' list -------------------------------------------------------------

@pytest.fixture
def negatives_scene(db, engine, media):
    from corrections.services import correction_not

    create_login(STAFF, is_staff=True, is_superuser=True)
    rose, _ = enrol("Rose Leslie", TRAIN / "rose_leslie" / "img1.jpg")
    kit, _ = enrol("Kit Harington", TRAIN / "kit_harington" / "john1.jpeg")
    # "This stranger is not Rose" (a sighting with its crop); "not Kit" of one kept without a crop.
    with_crop = correction_not(person=rose, sighting=kept_sighting(engine, TRAIN / "biden" / "biden.jpg"))
    without = correction_not(person=kit, sighting=kept_sighting(engine, TRAIN / "alex_lacamoire" / "img1.jpg",
                                                                crop=False))
    assert with_crop.negative.crop and not without.negative.crop
    return {"with_crop": with_crop.negative, "without": without.negative}


def test_the_negatives_list_shows_their_crops(negatives_scene, settings, tmp_path, chromium):
    with_crop, without = negatives_scene["with_crop"], negatives_scene["without"]
    log = Console(chromium)
    with page_server(settings, tmp_path) as (base, process):
        def detail():
            return f"{log.read()} {process.log_tail()}"

        sign_in(chromium, base, "/admin/corrections/negativeface/")
        WebDriverWait(chromium, 20).until(lambda d: d.find_elements(By.ID, "result_list"))
        assert sorted(int(t) for t in column(chromium, "id")) == sorted([with_crop.pk, without.pk])
        thumbs = all_loaded(chromium, "#result_list td.field-thumb img", 1, detail)
        assert [t["src"] for t in thumbs] == [f"/api/corrections/negatives/{with_crop.pk}/crop/"], thumbs
        thumbs_by_id = dict(zip((int(t) for t in column(chromium, "id")), column(chromium, "thumb"), strict=True))
        assert thumbs_by_id[without.pk] == "-"
        assert dict(zip(column(chromium, "id"), column(chromium, "person"), strict=True)) == {
            str(with_crop.pk): "Rose Leslie", str(without.pk): "Kit Harington"}
        wide(chromium, "#result_list th.column-thumb")
        screenshot(chromium, "admin-negatives.png")
        # The negative's own page: the larger crop.
        chromium.get(f"{base}/admin/corrections/negativeface/{with_crop.pk}/change/")
        large = all_loaded(chromium, ".field-crop_large img", 1, detail)
        assert large[0]["width"] > 48, large
        assert log.errors() == [], detail()
