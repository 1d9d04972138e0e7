// Sends a member's story through the unmodified @segment/analytics-node SDK for the privacy
// end-to-end test (crates/inlet-gateway/tests/privacy.rs): calls given as JSON lines on stdin,
// each {"call": "track"|"page"|"identify", ...the call's fields}; prints the messageIds sent.
import { Analytics } from '@segment/analytics-node'
import { createInterface } from 'node:readline'

const [host, writeKey] = process.argv.slice(2)
const errors = []
const analytics = new Analytics({ writeKey, host, flushAt: 15, maxRetries: 5 })
analytics.on('error', (err) => errors.push(String(err?.reason ?? err?.message ?? err)))

const sent = []
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue
  const { call, timestamp, ...fields } = JSON.parse(line)
  analytics[call]({ ...fields, timestamp: new Date(timestamp) })
  sent.push(fields.messageId)
}
await analytics.closeAndFlush({ timeout: 30_000 })
if (errors.length) {
  console.error('analytics-node reported errors:', errors)
  process.exit(1)
}
console.log(JSON.stringify(sent))
