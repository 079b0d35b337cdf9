from rest_framework.authentication import TokenAuthentication


class BearerTokenAuthentication(TokenAuthentication):
    """Accepts `Authorization: Bearer <token>` as well as DRF's `Token <token>`."""

    keywords = ("bearer", "token")

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        parts = header.split()
        if not parts or parts[0].lower() not in self.keywords:
            return None
        if len(parts) != 2:
            from rest_framework.exceptions import AuthenticationFailed

            raise AuthenticationFailed("Invalid Authorization header: expected '<Bearer|Token> <token>'.")
        return self.authenticate_credentials(parts[1])

    def authenticate_header(self, request):
        return "Bearer"
