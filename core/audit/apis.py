from drf_spectacular.utils import extend_schema
from rest_framework.views import APIView

from core.apis import errors
from core.audit.selectors import audit_list
from core.audit.serializers import AuditFilterSerializer, AuditRecordSerializer
from core.pagination import PageNumberPagination
from core.permissions import IsStaff


class AuditListApi(APIView):
    permission_classes = [IsStaff]
    pagination_class = PageNumberPagination  # read by the schema only: the answer is a page (count, results)

    @extend_schema(parameters=[AuditFilterSerializer], responses={200: AuditRecordSerializer(many=True),
                                                                  **errors(400, 404)})
    def get(self, request):
        filters = AuditFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = audit_list(**filters.validated_data)
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(AuditRecordSerializer(page, many=True).data)
