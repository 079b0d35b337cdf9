from rest_framework import pagination
from rest_framework.exceptions import ValidationError

from core.ids import parse_id


class PageNumberPagination(pagination.PageNumberPagination):
    """?page= and ?page_size= checked like every other parameter: a bad value is a 400 naming it
    (not a silent default, nor a 404); a page past the end stays a 404."""

    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        size = parse_id(raw)
        if size is None or size > self.max_page_size:
            raise ValidationError({"page_size": [f"A whole number from 1 to {self.max_page_size}."]})
        return size

    def get_page_number(self, request, paginator):
        raw = request.query_params.get(self.page_query_param) or "1"
        if raw in self.last_page_strings:
            return paginator.num_pages
        if parse_id(raw) is None:
            raise ValidationError({"page": ["A whole number from 1 (or 'last')."]})
        return raw
