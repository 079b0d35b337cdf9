from rest_framework.permissions import SAFE_METHODS, BasePermission


class IsStaffOrReadOnly(BasePermission):
    """Authenticated users read; staff write."""

    message = "Only staff may change this resource."

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or user.is_staff


class IsStaff(BasePermission):
    message = "Only staff may do this."

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff)


class IsAuthenticatedUser(BasePermission):
    """Any authenticated user, whatever the method (recognise and verify are reads by POST)."""

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated)
