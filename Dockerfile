# syntax=docker/dockerfile:1
# One image for every Tollgate service: the command picks it (`python -m tollgate_ledger`).
#   docker build -t tollgate .                      the services (the default target)
#   docker build --target devstack -t tollgate-dev .  plus the Stripe emulator and SMTP capture (compose)
# Where no registry is reachable, `make image` builds a base from Debian's packages and
# passes it as PYTHON_IMAGE (deploy/image/local-base.sh).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_VERSION=0.13.9

FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/uv && /opt/uv/bin/pip install --no-cache-dir "uv==${UV_VERSION}" \
 && python3 -m venv --without-pip /opt/tollgate
ENV PATH=/opt/uv/bin:$PATH
WORKDIR /src

# Third-party dependencies, from the lock alone, in a layer of their own: a code change
# does not reinstall them. (uv reads every member's pyproject to know the workspace.)
COPY pyproject.toml uv.lock ./
COPY shared/pyproject.toml shared/
COPY services/checkout/pyproject.toml services/checkout/
COPY services/ledger/pyproject.toml services/ledger/
COPY services/keys/pyproject.toml services/keys/
COPY services/notifier/pyproject.toml services/notifier/
COPY services/usage-sync/pyproject.toml services/usage-sync/
COPY services/portal/pyproject.toml services/portal/
COPY devstack/pyproject.toml devstack/
COPY bench/pyproject.toml bench/
ARG SERVICES="--package tollgate-checkout --package tollgate-ledger --package tollgate-keys --package tollgate-notifier --package tollgate-usage-sync --package tollgate-portal"
RUN uv export --frozen --no-dev --no-emit-workspace ${SERVICES} -o /tmp/services.txt \
 && uv pip install --python /opt/tollgate/bin/python --require-hashes --no-deps -r /tmp/services.txt

# The services themselves, as wheels (not editable: the image has no source tree).
COPY shared/src shared/src
COPY services/checkout/src services/checkout/src
COPY services/ledger/src services/ledger/src
COPY services/keys/src services/keys/src
COPY services/notifier/src services/notifier/src
COPY services/usage-sync/src services/usage-sync/src
COPY services/portal/src services/portal/src
RUN for p in shared services/checkout services/ledger services/keys services/notifier services/usage-sync services/portal; do \
      uv build --quiet --wheel --out-dir /tmp/wheels "$p" || exit 1; done \
 && uv pip install --python /opt/tollgate/bin/python --no-deps /tmp/wheels/*.whl

# The dev tools compose runs beside the services (never in a production image).
FROM build AS build-devstack
RUN uv export --frozen --no-dev --no-emit-workspace --package tollgate-devstack -o /tmp/devstack.txt \
 && uv pip install --python /opt/tollgate/bin/python --require-hashes --no-deps -r /tmp/devstack.txt
COPY devstack/src devstack/src
RUN uv build --quiet --wheel --out-dir /tmp/devwheels devstack \
 && uv pip install --python /opt/tollgate/bin/python --no-deps /tmp/devwheels/*.whl

FROM ${PYTHON_IMAGE} AS devstack
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin tollgate
COPY --from=build-devstack /opt/tollgate /opt/tollgate
ENV PATH=/opt/tollgate/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001

FROM ${PYTHON_IMAGE} AS service
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin tollgate
COPY --from=build /opt/tollgate /opt/tollgate
# Bytecode was compiled at install; nothing is written at run time, so the root
# filesystem can be read-only.
ENV PATH=/opt/tollgate/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001
EXPOSE 8000 9000
CMD ["python3", "-m", "tollgate_checkout"]
