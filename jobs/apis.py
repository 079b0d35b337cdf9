from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.apis import errors
from core.permissions import IsStaff
from jobs.models import Job


class JobSerializer(serializers.ModelSerializer):
    progress = serializers.FloatField(read_only=True)

    class Meta:
        model = Job
        fields = ["id", "kind", "state", "progress", "total", "processed", "encoded", "failed",
                  "errors", "message", "created_at", "started_at", "finished_at"]


class JobDetailApi(APIView):
    permission_classes = [IsStaff]

    @extend_schema(responses={200: JobSerializer, **errors(404)})
    def get(self, request, pk):
        return Response(JobSerializer(get_object_or_404(Job, pk=pk)).data)
