# The clothing classifier as an AWS Lambda function (container image).
# README, "Serving on AWS Lambda", has the build, run, push and deploy steps:
#   docker build --platform linux/amd64 --build-arg BUNDLE=runs/bundle -t clothing-classifier .
#
# Base: AWS's Python 3.12 Lambda image (Amazon Linux 2023, awslambdaric and the
# Runtime Interface Emulator included), pinned to a dated release. ai-edge-litert
# needs glibc >= 2.27, which the python:3.8-3.11 images (Amazon Linux 2) lack.
# The tag is multi-architecture: `--platform linux/arm64` (or `sam build` with
# Architecture=arm64, template.yaml) builds the arm64 image; ai-edge-litert and
# numpy ship aarch64 wheels.
FROM public.ecr.aws/lambda/python:3.12.2026.06.02.15

# The serve dependencies and nothing else (no TensorFlow): pyproject.toml's
# `serve` extra without awslambdaric (the base image has it), with every
# dependency pinned. tests/test_container_contract.py installs exactly this list.
# Then, in the same layer, the parts the handler never loads go (ai-edge-litert's
# GPU/NPU/compiler parts, numpy's tests, unused dependencies: 153 -> 100 MiB;
# docker/prune_site_packages.py says what and why; the contract test runs it too).
COPY docker/prune_site_packages.py /tmp/
RUN pip install --no-cache-dir \
        ai-edge-litert==2.3.0 \
        backports.strenum==1.2.8 \
        flatbuffers==25.12.19 \
        keras-image-helper==0.0.2 \
        ml-dtypes==0.6.0 \
        numpy==2.4.6 \
        pillow==13.0.0 \
        protobuf==7.36.2 \
        python-multipart==0.0.34 \
        tqdm==4.70.1 \
        typing-extensions==4.16.0 \
    && python /tmp/prune_site_packages.py \
    && rm /tmp/prune_site_packages.py

# The model bundle to ship: a folder written by `python -m convert`
# (model.tflite + manifest.json). The handler loads it from `model/` beside
# itself unless MODEL_DIR says otherwise.
ARG BUNDLE=runs/bundle
COPY inference/ ${LAMBDA_TASK_ROOT}/inference/
COPY lambda_function.py ${LAMBDA_TASK_ROOT}/
COPY ${BUNDLE}/ ${LAMBDA_TASK_ROOT}/model/

# /var/task is read-only in Lambda: compile the bytecode now, not at every cold start.
RUN python -m compileall -q "${LAMBDA_TASK_ROOT}/lambda_function.py" "${LAMBDA_TASK_ROOT}/inference"

CMD ["lambda_function.lambda_handler"]
