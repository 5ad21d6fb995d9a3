#!/bin/sh
# Starts compose.yml's Kafka: the broker's own SCRAM login (the admin user) from its Docker
# secret, and on the very first start the storage formatted with that user's credential, so
# that the SCRAM listener can authenticate the broker to itself before any ACL exists.
set -eu
admin=$(cat /run/secrets/kafka_admin_password)
umask 077
conf=/tmp/server.properties
cp /etc/mercato-kafka/server.properties "$conf"
printf 'listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="%s";\n' "$admin" >>"$conf"
# the healthcheck's client configuration
printf 'security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="%s";\n' "$admin" >/tmp/admin.properties
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
  /opt/kafka/bin/kafka-storage.sh format -c "$conf" -t "$(/opt/kafka/bin/kafka-storage.sh random-uuid)" \
    --add-scram "SCRAM-SHA-512=[name=admin,password=$admin]"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$conf"
