"""Page texts in German, French and English (the original offered /de and /fr)."""

from __future__ import annotations

LANGUAGES = ("de", "fr", "en")

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Get your credential",
        "scan": "Scan this QR code with your wallet app to connect.",
        "on_phone": "On this phone already?",
        "open_wallet": "Open in your wallet",
        "test_wallet": "Use the local test wallet",
        "connected": "Connected. Please enter your details.",
        "prename": "First name",
        "surname": "Last name",
        "institution": "Institution",
        "submit": "Request credential",
        "offered": "Your wallet has received the credential offer. Please accept it there.",
        "accepted": "Done! The credential is in your wallet.",
        "declined": "The credential offer was declined.",
        "expired": "This session has expired.",
        "failed": "Something went wrong while issuing the credential.",
        "again": "Start again",
        "agent_down": "The credential service is not reachable right now.",
        "retry": "Try again",
        "reconnecting": "Connection lost, reconnecting…",
    },
    "de": {
        "title": "Ihr Nachweis",
        "scan": "Scannen Sie diesen QR-Code mit Ihrer Wallet-App, um sich zu verbinden.",
        "on_phone": "Schon auf dem Smartphone?",
        "open_wallet": "In der Wallet öffnen",
        "test_wallet": "Lokale Test-Wallet verwenden",
        "connected": "Verbunden. Bitte geben Sie Ihre Angaben ein.",
        "prename": "Vorname",
        "surname": "Nachname",
        "institution": "Institution",
        "submit": "Nachweis anfordern",
        "offered": "Ihre Wallet hat das Angebot erhalten. Bitte nehmen Sie es dort an.",
        "accepted": "Fertig! Der Nachweis ist in Ihrer Wallet.",
        "declined": "Das Angebot wurde abgelehnt.",
        "expired": "Diese Sitzung ist abgelaufen.",
        "failed": "Beim Ausstellen des Nachweises ist ein Fehler aufgetreten.",
        "again": "Neu beginnen",
        "agent_down": "Der Ausstellungsdienst ist im Moment nicht erreichbar.",
        "retry": "Erneut versuchen",
        "reconnecting": "Verbindung unterbrochen, verbinde neu…",
    },
    "fr": {
        "title": "Obtenez votre attestation",
        "scan": "Scannez ce code QR avec votre application portefeuille pour vous connecter.",
        "on_phone": "Déjà sur votre téléphone ?",
        "open_wallet": "Ouvrir dans le portefeuille",
        "test_wallet": "Utiliser le portefeuille de test local",
        "connected": "Connecté. Veuillez saisir vos informations.",
        "prename": "Prénom",
        "surname": "Nom",
        "institution": "Institution",
        "submit": "Demander l'attestation",
        "offered": "Votre portefeuille a reçu l'offre. Veuillez l'accepter.",
        "accepted": "Terminé ! L'attestation est dans votre portefeuille.",
        "declined": "L'offre a été refusée.",
        "expired": "Cette session a expiré.",
        "failed": "Une erreur est survenue lors de l'émission de l'attestation.",
        "again": "Recommencer",
        "agent_down": "Le service d'émission n'est pas joignable pour le moment.",
        "retry": "Réessayer",
        "reconnecting": "Connexion perdue, reconnexion…",
    },
}


def texts(language: str) -> dict[str, str]:
    return TEXTS.get(language, TEXTS["en"])
