#!/bin/sh
# Runs once per `docker-compose up`, as the admin user: the client users' SCRAM credentials
# from their Docker secrets (set again each time, so a changed secret takes effect), the topics
# of CONTRACT 8, and ACLs such that only the relay writes them and everyone else only reads:
#   relay   Write, Describe on every *.events topic (and IdempotentWrite: its producer is idempotent)
#   node    Read, Describe on them; Read on consumer groups mercato-*
#   reader  Read, Describe on them; Read on consumer groups reader-* (other teams)
set -eu
s=/run/secrets
bin=/opt/kafka/bin
umask 077
printf 'security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="%s";\n' "$(cat $s/kafka_admin_password)" >/tmp/admin.properties
set -- --bootstrap-server kafka:9092 --command-config /tmp/admin.properties
for user in relay node reader; do
  "$bin/kafka-configs.sh" "$@" --alter --entity-type users --entity-name "$user" \
    --add-config "SCRAM-SHA-512=[password=$(cat "$s/kafka_${user}_password")]"
done
for aggregate in product inventory order payment user shipping; do
  topic=$aggregate.events
  "$bin/kafka-topics.sh" "$@" --create --if-not-exists --topic "$topic" --partitions 4 --replication-factor 1
  "$bin/kafka-acls.sh" "$@" --add --allow-principal User:relay --operation Write --operation Describe --topic "$topic"
  "$bin/kafka-acls.sh" "$@" --add --allow-principal User:node --allow-principal User:reader \
    --operation Read --operation Describe --topic "$topic"
done
"$bin/kafka-acls.sh" "$@" --add --allow-principal User:relay --operation IdempotentWrite --cluster
"$bin/kafka-acls.sh" "$@" --add --allow-principal User:node --operation Read --resource-pattern-type prefixed --group mercato-
"$bin/kafka-acls.sh" "$@" --add --allow-principal User:reader --operation Read --resource-pattern-type prefixed --group reader-
echo "kafka users, topics and ACLs in place"
