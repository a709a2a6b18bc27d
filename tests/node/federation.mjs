// A store's supergraph in one process: a tiny `orders` subgraph (@apollo/subgraph) and an
// Apollo Gateway composing it with Latchkey, forwarding the caller's bearer token to both.
// Usage: LATCHKEY_URL=http://…/graphql ORDERS='{"<customer id>": ["o1", …]}' node federation.mjs
// Prints {"gateway": URL} on the first line of standard output, then serves until killed.
import { ApolloServer } from "@apollo/server";
import { startStandaloneServer } from "@apollo/server/standalone";
import { ApolloGateway, IntrospectAndCompose, RemoteGraphQLDataSource } from "@apollo/gateway";
import { buildSubgraphSchema } from "@apollo/subgraph";
import { parse } from "graphql";

const owners = JSON.parse(process.env.ORDERS ?? "{}");
const ownerOf = {};
for (const [customer, orders] of Object.entries(owners)) {
  for (const id of orders) ownerOf[id] = customer;
}

const typeDefs = parse(`
  extend schema @link(url: "https://specs.apollo.dev/federation/v2.3", import: ["@key"])
  type Order @key(fields: "id") { id: ID! customer: Customer }
  type Customer @key(fields: "id") { id: ID! orders: [Order!]! }
  type Query { order(id: ID!): Order }
`);
const resolvers = {
  Query: {
    order: (_, { id }) => (ownerOf[id] ? { id, customer: { id: ownerOf[id] } } : null),
  },
  Customer: {
    orders: (customer) => (owners[customer.id] ?? []).map((id) => ({ id })),
  },
  Order: {
    customer: (order) => ({ id: ownerOf[order.id] }),
  },
};
const orders = new ApolloServer({ schema: buildSubgraphSchema({ typeDefs, resolvers }) });
const { url: ordersUrl } = await startStandaloneServer(orders, { listen: { port: 0 } });

const gateway = new ApolloGateway({
  supergraphSdl: new IntrospectAndCompose({
    subgraphs: [
      { name: "latchkey", url: process.env.LATCHKEY_URL },
      { name: "orders", url: ordersUrl },
    ],
  }),
  buildService: ({ url }) =>
    new RemoteGraphQLDataSource({
      url,
      willSendRequest({ request, context }) {
        if (context.authorization) request.http.headers.set("authorization", context.authorization);
      },
    }),
});
const server = new ApolloServer({ gateway });
const { url } = await startStandaloneServer(server, {
  listen: { port: 0 },
  context: async ({ req }) => ({ authorization: req.headers.authorization }),
});
console.log(JSON.stringify({ gateway: url }));
