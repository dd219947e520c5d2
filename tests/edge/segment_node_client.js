// Sends every Segment call type to the gateway with the real @segment/analytics-node SDK
// (installed by .ci/bootstrap into tests/.node), run with Debian's nodejs by test_segment_sdks.py.
// Usage: node segment_node_client.js <node_modules dir> <host> <write key> <run id>
const [modules, host, writeKey, run] = process.argv.slice(2);
const { Analytics } = require(`${modules}/@segment/analytics-node`);

const analytics = new Analytics({
  writeKey, host, path: '/v1/batch', flushAt: 50, flushInterval: 300, maxRetries: 5, httpRequestTimeout: 5000,
});
const failures = [];
analytics.on('error', (err) => failures.push(String(err && (err.code || err.reason || err.message || err))));
const userId = `node-user-${run}`;
analytics.track({ userId, event: 'Product Viewed', properties: { sku: 'SKU00001', run } });
analytics.identify({ userId, traits: { email: `node.${run}@sdk.test`, firstName: 'Nodey', plan: 'gold' } });
analytics.page({ userId, name: 'Home', category: 'Store', properties: { run } });
analytics.screen({ userId, name: 'Basket', properties: { run } });
analytics.group({ userId, groupId: `grp-${run}`, traits: { plan: 'b' } });
analytics.alias({ userId, previousId: `anon-${run}` });
analytics.track({ anonymousId: `anon-${run}`, event: 'Order Completed', properties: { order_id: `o-${run}`, total: 3 } });
analytics.closeAndFlush({ timeout: 30000 }).then(() => {
  console.log(JSON.stringify({ failures }));
});
