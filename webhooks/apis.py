"""HTTP API for webhooks: staff only (a subscription's secret signs what the service sends). Views
validate, call one service and serialize."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.apis import BODY_ERRORS, errors
from core.audit.services import audit_context
from core.pagination import PageNumberPagination
from core.permissions import IsStaff
from webhooks import selectors, services
from webhooks.models import Delivery, Subscription
from webhooks.serializers import (
    DeliveryFilterSerializer,
    DeliverySerializer,
    SubscriptionInputSerializer,
    SubscriptionOutputSerializer,
)

PAGE_PARAMETERS = [OpenApiParameter("page", int), OpenApiParameter("page_size", int)]


def _subscription(pk) -> Subscription:
    return get_object_or_404(selectors.subscription_list(), pk=pk)


def _paginated(view, request, queryset, serializer_class):
    paginator = PageNumberPagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


class WebhookListCreateApi(APIView):
    permission_classes = [IsStaff]
    pagination_class = PageNumberPagination  # read by the schema only: the answer is a page (count, results)

    @extend_schema(parameters=PAGE_PARAMETERS, responses={200: SubscriptionOutputSerializer(many=True),
                                                          **errors(400, 404)})
    def get(self, request):
        return _paginated(self, request, selectors.subscription_list(), SubscriptionOutputSerializer)

    @extend_schema(request=SubscriptionInputSerializer,
                   responses={201: SubscriptionOutputSerializer, **errors(*BODY_ERRORS)})
    def post(self, request):
        serializer = SubscriptionInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        subscription = services.subscription_create(**serializer.validated_data, **audit_context(request))
        return Response(SubscriptionOutputSerializer(_subscription(subscription.pk)).data,
                        status=status.HTTP_201_CREATED)


class WebhookDetailApi(APIView):
    permission_classes = [IsStaff]

    @extend_schema(responses={200: SubscriptionOutputSerializer, **errors(404)})
    def get(self, request, pk):
        return Response(SubscriptionOutputSerializer(_subscription(pk)).data)

    @extend_schema(request=SubscriptionInputSerializer,
                   responses={200: SubscriptionOutputSerializer, **errors(404, *BODY_ERRORS)})
    def patch(self, request, pk):
        subscription = _subscription(pk)
        serializer = SubscriptionInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        services.subscription_update(subscription=subscription, **serializer.validated_data, **audit_context(request))
        return Response(SubscriptionOutputSerializer(_subscription(pk)).data)

    @extend_schema(responses={204: None, **errors(404)})
    def delete(self, request, pk):
        services.subscription_delete(subscription=_subscription(pk), **audit_context(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookDeliveriesApi(APIView):
    permission_classes = [IsStaff]
    pagination_class = PageNumberPagination  # read by the schema only: the answer is a page (count, results)

    @extend_schema(parameters=[DeliveryFilterSerializer, *PAGE_PARAMETERS],
                   responses={200: DeliverySerializer(many=True), **errors(400, 404)})
    def get(self, request, pk):
        subscription = _subscription(pk)
        filters = DeliveryFilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        queryset = selectors.delivery_list(subscription=subscription, state=filters.validated_data.get("state"))
        return _paginated(self, request, queryset, DeliverySerializer)


class WebhookTestApi(APIView):
    permission_classes = [IsStaff]

    @extend_schema(request=None, responses={202: DeliverySerializer, **errors(404)})
    def post(self, request, pk):
        delivery = services.delivery_ping(subscription=_subscription(pk), **audit_context(request))
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class DeliveryRedeliverApi(APIView):
    permission_classes = [IsStaff]

    @extend_schema(request=None, responses={202: DeliverySerializer, **errors(404)})
    def post(self, request, pk):
        delivery = services.delivery_redeliver(delivery=get_object_or_404(Delivery, pk=pk),
                                                **audit_context(request))
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
