from django.urls import path

from attendance.apis import AttendanceDayApi, AttendanceSummaryApi

urlpatterns = [
    path("", AttendanceDayApi.as_view(), name="attendance-day"),
    path("summary/", AttendanceSummaryApi.as_view(), name="attendance-summary"),
]
