"""Social login: sign in with, and link, GitHub, Google, LinkedIn, Facebook and any OpenID
Connect provider (found by discovery)."""
