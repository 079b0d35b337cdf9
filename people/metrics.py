"""People's gauges in /metrics, read from the database at scrape time (core.exposition)."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily


def index_faces() -> list:
    from people.engine import embedding_model_id
    from people.models import Face

    faces = Face.objects.filter(status=Face.Status.ENCODED, model=embedding_model_id(), embedding__isnull=False)
    return [GaugeMetricFamily("facerec_index_faces", "Faces in the recognition index (encoded under the "
                              "current model).", value=faces.count())]


def people() -> list:
    from people.models import Person

    return [GaugeMetricFamily("facerec_people", "People enrolled.", value=Person.objects.count())]
