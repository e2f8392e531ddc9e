#!/usr/bin/env bash
# Backups of Hosen's PostgreSQL database with pg_dump (custom format), and their restore.
#
#   backup.sh nightly            dump now, then every night at HOSEN_BACKUP_AT (default 02:30,
#                                local time of TZ), deleting dumps older than
#                                HOSEN_BACKUP_KEEP_DAYS (default 14); runs until stopped
#   backup.sh now                one dump now; prints its path
#   backup.sh check              exit 0 if the newest dump is less than 26 hours old
#   backup.sh restore FILE DB    restore FILE into DB, a new database created here (never over
#                                a database that exists: switch to it afterwards, see
#                                docs/operations.md)
#
# The connection comes from libpq's variables (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD)
# or POSTGRES_PASSWORD_FILE; dumps go to HOSEN_BACKUP_DIR (default /backups). docker-compose.yml
# runs `nightly` in the `backup` service; the same script is run by the test suite.
set -euo pipefail

dir=${HOSEN_BACKUP_DIR:-/backups}
keep_days=${HOSEN_BACKUP_KEEP_DAYS:-14}
at=${HOSEN_BACKUP_AT:-02:30}
if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    PGPASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
    export PGPASSWORD
fi

dump() {
    mkdir -p "$dir"
    local stamp file
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    file="$dir/hosen-$stamp.dump"
    # Written under another name first: a dump cut short is never taken for a good one.
    pg_dump --format=custom --no-owner --no-privileges --file="$file.partial"
    mv "$file.partial" "$file"
    find "$dir" -maxdepth 1 -name 'hosen-*.dump' -mtime +"$keep_days" -delete
    echo "$file"
}

seconds_until_next() {
    local now next
    now=$(date +%s)
    next=$(date -d "today $at" +%s)
    if [ "$next" -le "$now" ]; then
        next=$(date -d "tomorrow $at" +%s)
    fi
    echo $((next - now))
}

case "${1:-}" in
    nightly)
        echo "backup: dumps to $dir at $at every night, kept $keep_days days"
        # Waited out in the background, so that `docker compose stop` ends it at once.
        trap 'exit 0' TERM INT
        dump
        while true; do
            sleep "$(seconds_until_next)" &
            wait $!
            dump || echo "backup: pg_dump failed; trying again tomorrow" >&2
        done
        ;;
    now)
        dump
        ;;
    check)
        [ -n "$(find "$dir" -maxdepth 1 -name 'hosen-*.dump' -mmin -1560 -print -quit)" ]
        ;;
    restore)
        file=${2:?usage: backup.sh restore FILE NEW_DATABASE}
        target=${3:?usage: backup.sh restore FILE NEW_DATABASE}
        createdb --template=template0 "$target"
        pg_restore --no-owner --no-privileges --exit-on-error --dbname="$target" "$file"
        echo "restored $file into database $target"
        ;;
    *)
        sed -n '2,20p' "$0" >&2
        exit 2
        ;;
esac
