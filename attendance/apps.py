from django.apps import AppConfig
from django.core import checks


class AttendanceConfig(AppConfig):
    name = "attendance"
    verbose_name = "Attendance"

    def ready(self) -> None:
        checks.register(check_time_zone, checks.Tags.compatibility)


def check_time_zone(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """A misspelt ATTENDANCE_TIME_ZONE fails at start-up, not on the first request."""
    from django.conf import settings

    from attendance.selectors import zone_by_name

    if zone_by_name(settings.ATTENDANCE_TIME_ZONE) is None:
        return [checks.Error(f"ATTENDANCE_TIME_ZONE {settings.ATTENDANCE_TIME_ZONE!r} is not an IANA time zone.",
                             hint="Use a name such as 'Europe/Paris' or 'UTC'.", id="attendance.E001")]
    return []
