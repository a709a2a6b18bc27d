// Vendure 3.7.3 as a store would start it for this comparison: PostgreSQL, bearer tokens, its
// default (in-memory) session cache, no plugins. Installed from the npm registry by
// signed-in-read.sh; nothing of Vendure is kept in this repository.
const { bootstrap } = require('@vendure/core');

bootstrap({
  apiOptions: { hostname: '127.0.0.1', port: Number(process.env.PORT || 3300) },
  authOptions: {
    tokenMethod: 'bearer',
    requireVerification: false,
    superadminCredentials: { identifier: 'superadmin', password: 'superadmin' },
  },
  dbConnectionOptions: {
    type: 'postgres',
    synchronize: true,
    logging: false,
    host: '127.0.0.1',
    port: 5432,
    username: 'postgres',
    password: '',
    database: process.env.VENDURE_DB,
  },
  paymentOptions: { paymentMethodHandlers: [] },
  plugins: [],
}).catch((e) => {
  console.error(e);
  process.exit(1);
});
