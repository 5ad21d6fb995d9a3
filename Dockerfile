# One image for every Mercato process, built from Debian packages only. The process it runs is
# chosen by the command (see compose.yml).
FROM debian:bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
        build-essential cmake pkg-config python3 \
        libczmq-dev libzmq3-dev libmsgpack-dev liblmdb-dev libcivetweb-dev libjansson-dev \
        libargon2-dev libjwt-dev libssl-dev libsodium-dev librdkafka-dev libcurl4-openssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release && cmake --build /build -j"$(nproc)" \
        --target mercato-broker mercato-node mercato-edge mercato-relay mercato-keys

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
        libczmq4 libzmq5 libmsgpackc2 liblmdb0 libcivetweb1 libjansson4 libargon2-1 libjwt0 \
        libssl3 libsodium23 librdkafka1 libcurl4 curl procps \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/mercato mercato \
    && mkdir -p /var/lib/mercato && chown mercato /var/lib/mercato
COPY --from=build /build/bin/mercato-broker /build/bin/mercato-node /build/bin/mercato-edge \
     /build/bin/mercato-relay /build/bin/mercato-keys /usr/local/bin/
USER mercato
ENV MERCATO_DATA_DIR=/var/lib/mercato
