# Sourced by the test/system scripts: checks on a job's output.

# exactly_once: reads a generator job's output lines (each with the event's
# "id":"PPPP-OOOO…", partition and offset) on stdin; prints "N ids, L lost,
# D doubled" and fails if any offset below a partition's highest output one
# is missing, or any id is written twice.
exactly_once() {
  grep -o '"id":"[0-9]*-[0-9]*"' | tr -d '"' | cut -d: -f2 | awk -F- '
    { p = $1 + 0; o = $2 + 0; n++
      if (seen[p, o]++) doubled++
      if (!(p in max) || o > max[p]) max[p] = o
    }
    END { printf "%d ids, ", n
          for (k in seen) { split(k, a, SUBSEP); distinct[a[1]]++ }
          lost = 0
          for (p in max) lost += max[p] + 1 - distinct[p]
          printf "%d lost, %d doubled\n", lost, doubled + 0
          exit (lost > 0 || doubled > 0) }'
}
