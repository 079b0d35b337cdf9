from django.apps import AppConfig


class CorrectionsConfig(AppConfig):
    name = "corrections"
    verbose_name = "Corrections"

    def ready(self) -> None:
        from django.db.models.signals import post_delete

        from core.index.sources import register_negatives
        from corrections import signals
        from corrections.index_log import negatives_snapshot
        from corrections.models import NegativeFace
        from people.hooks import person_erasing

        register_negatives(negatives_snapshot)
        person_erasing.connect(signals.erase_person, dispatch_uid="corrections.erase_person")
        post_delete.connect(signals.delete_crop, sender=NegativeFace, dispatch_uid="corrections.delete_crop")
