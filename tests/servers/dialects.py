#!/usr/bin/python3
"""An independent server of each of annotate's seven dialects, for the tests.

    python3 tests/servers/dialects.py --port PORT [--token T] [--host 127.0.0.1]

One FastAPI app (served by uvicorn) answering the seven kinds of model server that
docs/PROTOCOLS.md describes, each with that server's own request and answer format, written
from PROTOCOLS.md (which cites each project's documentation and source), not from annotate's
mock (src/mock/). Section numbers below (§1 .. §7) are PROTOCOLS.md's.

    POST /v2/models/classifier/infer     Triton / KServe v2 (§1)
    POST /predictions/classifier         TorchServe (§2)             (PUT too, as `curl -T` sends)
    POST /v1/models/classifier:predict   TensorFlow Serving REST (§3)
    POST /v1/chat/completions            OpenAI-compatible chat completions (§4)
    POST /models/classifier              Hugging Face Inference API (§5)
    POST /classifier                     a FastAPI UploadFile endpoint (§6)
    POST /v1/images:annotate?key=KEY     Google Cloud Vision (§7)
    GET  /health                         200 {"status":"ok"} once the app serves (for start-up polls)

The "model" is deliberately not the mock's, and is easy to recompute in C
(tests/helpers/pyserver.c, pyserver_expected):

    crc   = zlib.crc32(image bytes)           (reflected polynomial 0xEDB88320)
    LABEL = "L%08x" % crc                     the best class
    LABEL2 = "L%08x" % (crc ^ 0xffffffff)     the runner-up, where a server answers a top-k list
    SCORE = len(image bytes)                  LABEL2's score is 0

Only images are classified: bytes without a PNG, JPEG, GIF, WebP, BMP or TIFF signature are
refused the way each server refuses an image its model cannot read. Everything else is
validated strictly too: base64 must be standard, padded, canonical base64 without white space;
JSON bodies need Content-Type application/json (parameters such as charset allowed) and must be
strict JSON (no NaN); raw bodies need an image/* or application/octet-stream Content-Type.

Answers are serialised with json.dumps(obj, separators=(",", ":")) so that their bytes are
predictable, and sent as Content-Type: application/json. Answers do not depend on time or on
earlier requests. Error *shapes* (keys, types, status codes) follow the documentation cited;
error *message texts* are close to the real ones where PROTOCOLS.md quotes them and otherwise
illustrative.

--token T: the OpenAI endpoint then wants "Authorization: Bearer T" and Google's wants
?key=T (or an X-Goog-Api-Key: T header). Without --token, OpenAI still wants some Bearer token
(as OpenAI does) and Google accepts any key or none. The other dialects never check tokens (the
examples/*.json for them send none).
"""

import argparse
import base64
import binascii
import json
import re
import zlib
from typing import Any, Optional

import uvicorn
from fastapi import FastAPI, HTTPException, Request, UploadFile
from fastapi.responses import Response

app = FastAPI(title="annotate dialect test server", docs_url=None, redoc_url=None, openapi_url=None)
TOKEN: Optional[str] = None  # set from --token in main()

MODEL = "classifier"


# ---- the model -------------------------------------------------------------------------------

IMAGE_SIGNATURES = (
    b"\x89PNG\r\n\x1a\n",  # PNG
    b"\xff\xd8\xff",  # JPEG
    b"GIF87a",
    b"GIF89a",
    b"BM",  # BMP
    b"II*\x00",  # TIFF, little-endian
    b"MM\x00*",  # TIFF, big-endian
)


def is_image(data: bytes) -> bool:
    """True when the bytes start like an image file (the same test as pyserver_is_image in C)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return True
    return any(data.startswith(sig) for sig in IMAGE_SIGNATURES)


def classify(data: bytes) -> list:
    """The top-2 classes, best first: [(LABEL, SCORE), (LABEL2, 0)]."""
    crc = zlib.crc32(data) & 0xFFFFFFFF
    return [("L%08x" % crc, len(data)), ("L%08x" % (crc ^ 0xFFFFFFFF), 0)]


# ---- helpers -----------------------------------------------------------------------------------


def answer(obj: Any, status: int = 200, headers: Optional[dict] = None) -> Response:
    """obj as compact JSON (predictable bytes), Content-Type: application/json."""
    body = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    return Response(content=body, status_code=status, media_type="application/json", headers=headers)


def media_type(request: Request) -> str:
    """The Content-Type's media type, lower case, without parameters ("" when absent)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_json_type(request: Request) -> bool:
    return media_type(request) == "application/json"


def is_raw_image_type(request: Request) -> bool:
    mt = media_type(request)
    return mt == "application/octet-stream" or (mt.startswith("image/") and len(mt) > len("image/"))


class BadInput(Exception):
    """A request this server refuses; each endpoint turns it into its own error shape."""


def _no_constants(name: str):
    raise ValueError("%s is not JSON" % name)


async def json_body(request: Request) -> Any:
    """The body parsed as strict JSON (RFC 8259: no NaN/Infinity, UTF-8), or BadInput."""
    raw = await request.body()
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError) as e:
        raise BadInput("body is not valid JSON: %s" % e) from None


def strict_b64(s: Any, what: str) -> bytes:
    """Standard base64 (RFC 4648 §4, '+/' and '=' padding), no white space, canonical."""
    if not isinstance(s, str):
        raise BadInput("%s must be a base64 string" % what)
    try:
        data = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput("%s is not valid standard base64" % what) from None
    # b64decode(validate=True) still accepts non-zero bits in the last character ("QR==") and
    # data after the padding ("QQ==QQ=="); a strict decoder (Go's StdEncoding.Strict) does not.
    if base64.b64encode(data).decode("ascii") != s:
        raise BadInput("%s is not valid standard base64" % what)
    return data


def image_error(data: bytes) -> Optional[str]:
    """Why the model cannot classify these bytes, or None."""
    if not data:
        return "the image is empty"
    if not is_image(data):
        return "the bytes are not an image (no PNG, JPEG, GIF, WebP, BMP or TIFF signature)"
    return None


@app.get("/health")
async def health():
    return answer({"status": "ok"})


# ---- §1 Triton / KServe v2 -----------------------------------------------------------------
# Request and answer: KServe "Predict Protocol - Version 2" (required_api.md, "Inference Request
# JSON Object" / "Inference Response JSON Object"). The model has one BYTES input INPUT of shape
# [1] (max_batch_size 0) and one BYTES output OUTPUT; like the models PROTOCOLS.md describes, it
# base64-decodes its input itself (Triton passes BYTES strings through as-is).
# Errors: {"error": "<message>"} (required_api.md, "Inference Response JSON Error Object"),
# 400 for INVALID_ARG and an unknown model (Triton's HttpCodeFromError; model_repository_manager.cc).


def kserve_error(message: str, status: int = 400) -> Response:
    return answer({"error": message}, status)


@app.post("/v2/models/{model}/infer")
async def kserve_infer(model: str, request: Request):
    if model != MODEL:
        return kserve_error("Request for unknown model: '%s' is not found" % model)
    try:
        if not is_json_type(request):
            raise BadInput("expected Content-Type application/json")
        body = await json_body(request)
        if not isinstance(body, dict):
            raise BadInput("the request must be a JSON object")
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
            raise BadInput("expected 1 inputs but got %d inputs for model '%s'"
                           % (len(inputs) if isinstance(inputs, list) else 0, MODEL))
        inp = inputs[0]
        if inp.get("name") != "INPUT":
            raise BadInput("unexpected inference input '%s' for model '%s'" % (inp.get("name"), MODEL))
        if inp.get("datatype") != "BYTES":
            raise BadInput("inference input 'INPUT' data-type is '%s', but model '%s' expects 'BYTES'"
                           % (inp.get("datatype"), MODEL))
        if inp.get("shape") != [1]:
            raise BadInput("unexpected shape for input 'INPUT' for model '%s'. Expected [1], got %s"
                           % (MODEL, json.dumps(inp.get("shape"))))
        data = inp.get("data")
        if not isinstance(data, list) or len(data) != 1:
            raise BadInput("unexpected number of string elements for inference input 'INPUT', "
                           "expecting 1")
        for out in body.get("outputs") or []:
            if not isinstance(out, dict) or out.get("name") != "OUTPUT":
                raise BadInput("unexpected inference output '%s' for model '%s'"
                               % (out.get("name") if isinstance(out, dict) else out, MODEL))
        image = strict_b64(data[0], "input 'INPUT'")
        why = image_error(image)
        if why:
            raise BadInput(why)
    except BadInput as e:
        return kserve_error(str(e))
    result = {"model_name": MODEL, "model_version": "1"}
    if "id" in body:  # "id" is echoed back (required_api.md)
        result["id"] = body["id"]
    result["outputs"] = [{"name": "OUTPUT", "datatype": "BYTES", "shape": [1],
                          "data": [classify(image)[0][0]]}]
    return answer(result)


# ---- §2 TorchServe ---------------------------------------------------------------------------
# Request: the raw image (`curl .../predictions/resnet-18 -T kitten_small.jpg`, inference_api.md),
# or a multipart form whose file part is "data" (vision_handler.py reads "data" or "body").
# Answer: the image_classifier handler's top-k object {label: probability, ...}
# (image_classifier.py postprocess, util.py map_class_to_label), here top 2.
# Errors: {"code": status, "type": "<Java exception>", "message": ...} (ErrorResponse.java):
# 404 ModelNotFoundException "Model not found: x"; an image the handler cannot read fails in
# the Python worker and comes back as 503 InternalServerException "Prediction failed"
# (ts/service.py predict; RestJob.sendError) -- a bad image is a 503 in TorchServe, not a 400.


def torchserve_error(status: int, kind: str, message: str) -> Response:
    return answer({"code": status, "type": kind, "message": message}, status)


@app.api_route("/predictions/{model}", methods=["POST", "PUT"])
async def torchserve_predict(model: str, request: Request):
    if model != MODEL:
        return torchserve_error(404, "ModelNotFoundException", "Model not found: %s" % model)
    mt = media_type(request)
    if mt == "multipart/form-data":
        form = await request.form()
        part = form.get("data") or form.get("body")
        image = await part.read() if hasattr(part, "read") else None
    elif is_raw_image_type(request):
        image = await request.body()
    else:
        # The worker json.loads application/json and decodes text/* to a str
        # (otf_message_handler.py); the vision handler then fails on it.
        image = None
    if image is None or image_error(image):
        return torchserve_error(503, "InternalServerException", "Prediction failed")
    return answer({label: score for label, score in classify(image)})


# ---- §3 TensorFlow Serving REST ---------------------------------------------------------------
# Request: {"instances": [{"b64": "<base64>"}, ...]} (api_rest.md, "Encoding binary values"): an
# object is a binary value only when its one member is "b64" holding a string (json_tensor.cc
# IsValBase64Object); bad base64 is InvalidArgument "Unable to base64 decode" -> 400.
# Answer: {"predictions": [...]}, one per instance; the model has two named outputs, label and
# score, so each prediction is an object of them (api_rest.md, "Response format").
# Errors: {"error": "<message>"} (api_rest.md), pretty-printed as TF Serving's rapidjson
# PrettyWriter does (MakeJsonFromStatus); unknown model -> 404 "Servable not found for request".
# TF Serving itself ignores Content-Type; this server insists on application/json.


def tfserving_error(message: str, status: int = 400) -> Response:
    body = json.dumps({"error": message}, indent=4).encode("utf-8")
    return Response(content=body, status_code=status, media_type="application/json")


@app.post("/v1/models/{model}:predict")
async def tfserving_predict(model: str, request: Request):
    if model != MODEL:
        return tfserving_error("Servable not found for request: Latest(%s)" % model, 404)
    try:
        if not is_json_type(request):
            raise BadInput("expected Content-Type application/json")
        body = await json_body(request)
        if not isinstance(body, dict):
            raise BadInput("JSON Value: %s Is not object" % json.dumps(body))
        if "instances" in body and "inputs" in body:
            raise BadInput("Not both 'instances' and 'inputs' may be specified")
        sig = body.get("signature_name", "serving_default")
        if sig != "serving_default":
            raise BadInput('Serving signature name: "%s" not found in signature def' % sig)
        instances = body.get("instances")
        if not isinstance(instances, list) or not instances:
            raise BadInput("Missing 'instances' key")
        images = []
        for inst in instances:
            if not (isinstance(inst, dict) and len(inst) == 1 and isinstance(inst.get("b64"), str)):
                raise BadInput("JSON Value: %s Type: %s is not of expected type: string (b64)"
                               % (json.dumps(inst), type(inst).__name__))
            try:
                image = strict_b64(inst["b64"], "b64")
            except BadInput:
                raise BadInput("Unable to base64 decode") from None
            if image_error(image):
                raise BadInput("Invalid JPEG data or crop window, data size %d" % len(image))
            images.append(image)
    except BadInput as e:
        return tfserving_error(str(e))
    preds = []
    for image in images:
        label, score = classify(image)[0]
        preds.append({"label": label, "score": score})
    return answer({"predictions": preds})


# ---- §4 OpenAI-compatible chat completions -------------------------------------------------------
# Request: model, messages[0].content = [{"type":"text",...}, {"type":"image_url","image_url":
# {"url": "data:image/...;base64,..."}}] (openapi.yaml, ChatCompletionRequestMessageContentPartImage).
# Answer: a chat.completion object whose choices[0].message.content is the model's text, here a
# JSON document {"label": ..., "score": ...} written the way json.dumps writes it by default
# (with spaces, as a model would), so that a client's `fromjson` really re-prints it.
# Errors: {"error": {"message", "type", "param", "code"}} (openapi.yaml, Error/ErrorResponse);
# 401 with code "invalid_api_key" for a wrong key (as OpenAI answers it), 404 "model_not_found".


def openai_error(status: int, message: str, kind: str = "invalid_request_error",
                 param: Optional[str] = None, code: Optional[str] = None) -> Response:
    return answer({"error": {"message": message, "type": kind, "param": param, "code": code}}, status)


DATA_URL = re.compile(r"data:(image/[A-Za-z0-9.+-]+);base64,(.*)", re.S)


@app.post("/v1/chat/completions")
async def openai_chat(request: Request):
    auth = request.headers.get("authorization", "")
    m = re.fullmatch(r"Bearer (\S+)", auth)
    if not m:
        return openai_error(401, "You didn't provide an API key. You need to provide your API key "
                                 "in an Authorization header using Bearer auth (i.e. Authorization: "
                                 "Bearer YOUR_KEY).")
    if TOKEN is not None and m.group(1) != TOKEN:
        return openai_error(401, "Incorrect API key provided. You can find your API key at "
                                 "https://platform.openai.com/account/api-keys.",
                            code="invalid_api_key")
    try:
        if not is_json_type(request):
            raise BadInput("Invalid Content-Type header (%s), expected application/json."
                           % request.headers.get("content-type", "none"))
        try:
            body = await json_body(request)
        except BadInput:
            raise BadInput("We could not parse the JSON body of your request. The OpenAI API "
                           "expects a JSON payload.") from None
        if not isinstance(body, dict):
            raise BadInput("The request body must be a JSON object.")
        if body.get("model") != MODEL:
            return openai_error(404, "The model `%s` does not exist or you do not have access to it."
                                % body.get("model"), code="model_not_found")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not isinstance(messages[0], dict):
            raise BadInput("'messages' must be a non-empty array of message objects.", "messages")
        content = messages[0].get("content")
        if not isinstance(content, list):
            raise BadInput("messages[0].content must be an array of content parts.",
                           "messages.[0].content")
        texts = [p for p in content if isinstance(p, dict) and p.get("type") == "text"]
        parts = [p for p in content if isinstance(p, dict) and p.get("type") == "image_url"]
        if not texts or not all(isinstance(p.get("text"), str) for p in texts):
            raise BadInput("messages[0].content needs a text part.", "messages.[0].content")
        if len(parts) != 1:
            raise BadInput("messages[0].content needs exactly one image_url part.",
                           "messages.[0].content")
        iu = parts[0].get("image_url")
        url = iu.get("url") if isinstance(iu, dict) else None
        d = DATA_URL.fullmatch(url) if isinstance(url, str) else None
        if not d:
            raise BadInput("Invalid image URL: expected a data:image/...;base64,... URL.",
                           "messages.[0].content.[1].image_url.url")
        try:
            image = strict_b64(d.group(2), "image data")
        except BadInput:
            raise BadInput("Invalid base64 image data in the image URL.",
                           "messages.[0].content.[1].image_url.url") from None
        if image_error(image):
            return openai_error(400, "You uploaded an unsupported image. Please make sure your image "
                                     "is valid.", code="image_parse_error")
    except BadInput as e:
        return openai_error(400, e.args[0], param=e.args[1] if len(e.args) > 1 else None)
    label, score = classify(image)[0]
    text = json.dumps({"label": label, "score": score})  # '{"label": "L…", "score": N}'
    crc = zlib.crc32(image) & 0xFFFFFFFF
    return answer({
        "id": "chatcmpl-%08x" % crc,
        "object": "chat.completion",
        "created": 1700000000,  # fixed: answers depend on the image only
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": len(image), "completion_tokens": len(text),
                  "total_tokens": len(image) + len(text)},
    })


# ---- §5 Hugging Face Inference API --------------------------------------------------------------
# Request: the raw image with its Content-Type, or JSON {"inputs": "<base64>", "parameters":
# {"top_k": k}} (image-classification.md, "inputs" / "parameters").
# Answer: [{"label": ..., "score": ...}, ...], best first (image-classification.md, "Response").
# Errors: {"error": "<message>"} (shape as users report it; PROTOCOLS.md §5 marks the message
# texts unconfirmed), 400 here for a body that is not an image; 404 for an unknown model.


def hf_error(message: str, status: int = 400) -> Response:
    return answer({"error": message}, status)


@app.post("/models/{model:path}")
async def hf_classify(model: str, request: Request):
    if model != MODEL:
        return hf_error("Model %s does not exist" % model, 404)
    top_k = None
    try:
        if is_json_type(request):
            body = await json_body(request)
            if not isinstance(body, dict) or "inputs" not in body:
                raise BadInput("Missing 'inputs' in the JSON body")
            image = strict_b64(body["inputs"], "inputs")
            params = body.get("parameters") or {}
            if not isinstance(params, dict):
                raise BadInput("'parameters' must be an object")
            top_k = params.get("top_k")
            if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
                raise BadInput("top_k must be a positive integer")
        elif is_raw_image_type(request):
            image = await request.body()
        else:
            raise BadInput("Content type \"%s\" not supported. Send the image with an image/* or "
                           "application/octet-stream Content-Type." % media_type(request))
        why = image_error(image)
        if why:
            raise BadInput(why)
    except BadInput as e:
        return hf_error(str(e))
    return answer([{"label": label, "score": score} for label, score in classify(image)][:top_k])


# ---- §6 FastAPI UploadFile ------------------------------------------------------------------------
# The real FastAPI way (request-files.md): a multipart/form-data part named "file"; FastAPI
# itself answers 422 {"detail": [...]} when it is missing or the body is not a form
# (exception_handlers.py, request_validation_exception_handler). The app's own refusal of a
# part that is not an image is an HTTPException -> {"detail": "..."} (handling-errors.md).


@app.post("/classifier")
async def classifier(file: UploadFile):
    data = await file.read()
    why = image_error(data)
    if why:
        raise HTTPException(status_code=400, detail="%s: %s" % (file.filename, why))
    label, score = classify(data)[0]
    return answer({"filename": file.filename, "content_type": file.content_type,
                   "label": label, "score": score})


# ---- §7 Google Cloud Vision images:annotate --------------------------------------------------
# Request: {"requests": [{"image": {"content": "<base64>"}, "features": [{"type":
# "LABEL_DETECTION", "maxResults": n}]}]}, at most 16 requests (docs/labels; quotas).
# Key: ?key=KEY or the X-Goog-Api-Key header (api-keys-use).
# Answer: {"responses": [{"labelAnnotations": [{"mid", "description", "score", "topicality"}]}]}
# (AnnotateImageResponse / EntityAnnotation), maxResults default 10 (here at most 2 labels).
# Per-image errors come inside a 200: responses[i].error is a google.rpc.Status {"code": 3,
# "message": "Bad image data."} (3 = INVALID_ARGUMENT), and the other images still get answers.
# Whole-request errors: {"error": {"code": http, "message", "status", "details"}} (AIP-193);
# a wrong key is 400 INVALID_ARGUMENT "API key not valid. Please pass a valid API key." with an
# ErrorInfo reason API_KEY_INVALID; a missing key 403 PERMISSION_DENIED.


# google.cloud.vision.v1.Feature.Type (the REST reference's enum).
FEATURE_TYPES = {"TYPE_UNSPECIFIED", "FACE_DETECTION", "LANDMARK_DETECTION", "LOGO_DETECTION",
                 "LABEL_DETECTION", "TEXT_DETECTION", "DOCUMENT_TEXT_DETECTION",
                 "SAFE_SEARCH_DETECTION", "IMAGE_PROPERTIES", "CROP_HINTS", "WEB_DETECTION",
                 "PRODUCT_SEARCH", "OBJECT_LOCALIZATION"}


def google_error(status: int, grpc_status: str, message: str, details: Optional[list] = None) -> Response:
    err = {"code": status, "message": message, "status": grpc_status}
    if details:
        err["details"] = details
    return answer({"error": err}, status)


def google_bad_field(field: str, message: str) -> Response:
    return google_error(400, "INVALID_ARGUMENT", message, [{
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": field, "description": message}]}])


@app.post("/v1/images:annotate")
async def google_annotate(request: Request, key: Optional[str] = None):
    key = key if key is not None else request.headers.get("x-goog-api-key")
    if TOKEN is not None:
        if not key:
            return google_error(403, "PERMISSION_DENIED",
                                "The request is missing a valid API key.")
        if key != TOKEN:
            return google_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "vision.googleapis.com"}}])
    if not is_json_type(request):
        return google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received. "
                            "Expected Content-Type application/json.")
    try:
        body = await json_body(request)
    except BadInput as e:
        return google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received. %s" % e)
    reqs = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(reqs, list) or not reqs:
        return google_bad_field("requests", "No requests specified.")
    if len(reqs) > 16:
        return google_bad_field("requests", "At most 16 requests are allowed, got %d." % len(reqs))
    responses = []
    for i, r in enumerate(reqs):
        where = "requests[%d]" % i
        if not isinstance(r, dict):
            return google_bad_field(where, "Invalid value at '%s', expected an object." % where)
        img = r.get("image")
        content = img.get("content") if isinstance(img, dict) else None
        if not isinstance(content, str):
            return google_bad_field(where + ".image", "Invalid value at '%s.image': an image "
                                    "content is required." % where)
        try:
            image = strict_b64(content, "content")
        except BadInput:
            return google_bad_field(where + ".image.content", "Invalid value at '%s.image.content' "
                                    "(TYPE_BYTES), Base64 decoding failed." % where)
        feats = r.get("features")
        if not isinstance(feats, list) or not feats:
            return google_bad_field(where + ".features", "No features specified.")
        max_results, labels_wanted = 10, False
        for j, f in enumerate(feats):
            ftype = f.get("type") if isinstance(f, dict) else None
            field = "%s.features[%d]" % (where, j)
            if ftype not in FEATURE_TYPES:
                return google_bad_field(field + ".type", "Invalid value at '%s.type' "
                                        "(type.googleapis.com/google.cloud.vision.v1.Feature.Type), %s"
                                        % (field, json.dumps(ftype)))
            mr = f.get("maxResults", 10)
            if not isinstance(mr, int) or isinstance(mr, bool):
                return google_bad_field(field + ".maxResults", "Invalid value at '%s.maxResults' "
                                        "(TYPE_INT32), %s" % (field, json.dumps(mr)))
            if ftype == "LABEL_DETECTION":
                labels_wanted, max_results = True, mr if mr > 0 else 10
        if image_error(image):
            responses.append({"error": {"code": 3, "message": "Bad image data."}})
            continue
        crc = zlib.crc32(image) & 0xFFFFFFFF
        labels = [{"mid": "/m/%08x" % c, "description": label, "score": score, "topicality": score}
                  for c, (label, score) in zip((crc, crc ^ 0xFFFFFFFF), classify(image))]
        # Other features are valid requests, but this model only labels: they add nothing, and
        # without LABEL_DETECTION the response is {} ("labelAnnotations: If present, label
        # detection has completed successfully", AnnotateImageResponse).
        responses.append({"labelAnnotations": labels[:max_results]} if labels_wanted else {})
    return answer({"responses": responses})


# ---- main -----------------------------------------------------------------------------------


def main() -> None:
    global TOKEN
    ap = argparse.ArgumentParser(description="An independent server of annotate's seven dialects.")
    ap.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--token", help="the OpenAI Bearer token and Google API key to require")
    args = ap.parse_args()
    TOKEN = args.token
    # Warnings and errors only (no start-up banner, no access log): a test's output stays clean.
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
