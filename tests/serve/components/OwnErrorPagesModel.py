"""MODEL with its own Flask blueprint (seldon-core's ``model_error_handler`` hook): a route of
its own, ``GET /custom``, and its own answer to HTTP 404s."""

from flask import Blueprint, jsonify

pages = Blueprint("own_error_pages", __name__)


@pages.route("/custom", methods=["GET"])
def custom():
    return jsonify({"custom": True})


@pages.app_errorhandler(404)
def not_found(error):
    return jsonify({"mine": "no such page"}), 404


class OwnErrorPagesModel:
    model_error_handler = pages

    def predict(self, X, features_names=None, meta=None):
        return X
