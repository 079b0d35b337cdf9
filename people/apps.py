from django.apps import AppConfig


class PeopleConfig(AppConfig):
    name = "people"
    verbose_name = "People and faces"

    def ready(self) -> None:
        from django.db.models.signals import m2m_changed, pre_delete

        from core.exposition import register_scrape_reader
        from core.index.sources import register_faces
        from people import metrics
        from people.engine import embedding_model_id
        from people.erasure import erase_on_delete
        from people.index_log import faces_snapshot, memberships_changed
        from people.models import Person

        register_faces(model_id=embedding_model_id, faces=faces_snapshot)
        # Gallery memberships, however they are written, reach every process's index.
        m2m_changed.connect(memberships_changed, sender=Person.galleries.through, dispatch_uid="people.index")
        register_scrape_reader(metrics.index_faces)
        register_scrape_reader(metrics.people)

        # Any deletion of a person (a queryset, the shell) erases their data as person_delete does.
        pre_delete.connect(erase_on_delete, sender=Person, dispatch_uid="people.erase_on_delete")
