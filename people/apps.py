from django.apps import AppConfig


class PeopleConfig(AppConfig):
    name = "people"
    verbose_name = "People and faces"

    def ready(self) -> None:
        from django.db.models.signals import pre_delete

        from people.erasure import erase_on_delete
        from people.models import Person

        # Any deletion of a person (a queryset, the shell) erases their data as person_delete does.
        pre_delete.connect(erase_on_delete, sender=Person, dispatch_uid="people.erase_on_delete")
