//+------------------------------------------------------------------+
//|                                               SoloDeskBridge.mq4 |
//|       solodesk's bridge between a MetaTrader 4 terminal and the  |
//|       desk over ZeroMQ: commands, replies and market data.       |
//+------------------------------------------------------------------+
//| Sockets, bound by this EA (the desk connects):                   |
//|   PULL  CommandPort     32768  commands                          |
//|   PUSH  ReplyPort       32769  one reply per command             |
//|   PUB   MarketDataPort  32770  quotes and bars                   |
//|                                                                  |
//| Legacy dialect (DWX ZeroMQ v2.0.1): ';'-separated commands,      |
//| replies written as Python literals, market data TOPIC:|:PAYLOAD. |
//| Extended dialect: a command starting "#<request id>;" is         |
//| answered in JSON with "_request_id" first; HELLO and GET_HISTORY |
//| exist in it only; quotes and bars tracked by an extended TRACK   |
//| command are published as TOPIC:|:SEQ:|:PAYLOAD, bars with a      |
//| closed flag. Both dialects are served side by side.              |
//|                                                                  |
//| The reference for every text this EA writes is the transcript    |
//| tests/data/mt4/transcript.jsonl and the module                   |
//| execution/brokers/mt4/protocol.py. Install: docs/mt4.md.         |
//+------------------------------------------------------------------+
#property copyright   "solodesk"
#property version     "1.00"
#property description "solodesk bridge: commands, replies and market data over ZeroMQ"
#property strict

#include <stderror.mqh>
#include <stdlib.mqh>
#include <Zmq/Zmq.mqh>

//--- connection
input string   Protocol                = "tcp";        // ZeroMQ transport
input string   Host                    = "127.0.0.1";  // interface to bind ("*": all; then use CURVE)
input int      CommandPort             = 32768;        // PULL: commands
input int      ReplyPort               = 32769;        // PUSH: replies
input int      MarketDataPort          = 32770;        // PUB: quotes and bars
input int      TimerMilliseconds       = 1;            // how often commands are read
input int      MarketDataHighWaterMark = 10000;        // PUB queue per subscriber, messages
//--- trading
input int      MaximumOrders           = 1;            // open and pending orders allowed (0: no limit)
input double   MaximumLotSize          = 0.01;         // largest order, lots (0: no limit)
input int      MagicNumber             = 123456;       // magic of an OPEN whose MAGIC is 0
input int      Slippage                = 3;            // points
input string   SymbolMap               = "";           // desk=broker: EURUSD=EURUSD.ecn,GBPUSD=GBPUSD.ecn
//--- market data
input bool     PublishClosedBars       = true;         // extended dialect: publish each bar that closes
//--- security: CURVE (an empty secret key leaves it off)
input string   CurveServerSecretKey    = "";           // the EA's secret key, Z85 (40 characters)
input string   CurveClientPublicKeys   = "";           // allowed clients' public keys, Z85, comma-separated

#define BRIDGE_NAME          "SoloDeskBridge"
#define BRIDGE_VERSION       "1.00"
#define PROTOCOL_VERSION     1           // the extended dialect's version
//--- reply codes (protocol.py: TRADE_CONTEXT_BUSY, NO_BROKER_CONNECTION, ...)
#define CODE_CONTEXT_BUSY    "TRADE_CONTEXT_BUSY__"
#define CODE_NO_CONNECTION   "NO_BROKER_CONNECTION__ABORTED_COMMAND"
#define CODE_BAD_COMMAND     "BAD_COMMAND"
#define CODE_MAX_ORDERS      "MAX_ORDERS_REACHED"
#define CODE_MAX_LOTS        "MAX_LOT_SIZE_EXCEEDED"
#define CODE_NOT_AVAILABLE   "NOT_AVAILABLE"
//--- limits (protocol.py: MAX_COMMAND_CHARS, MT4_COMMENT_MAX, ...)
#define MAX_COMMAND_CHARS    65536
#define MT4_COMMENT_MAX      31
#define CLIENT_ORDER_ID_LEN  24
#define TOKEN_MAX            40          // request ids and client ids
#define SYMBOL_MAX           32
#define TRADE_FIELDS         11
//--- the EA's own pacing
#define RETRIES              3           // sends after a requote or a price change
#define COMMANDS_PER_TIMER   100         // one burst cannot freeze the terminal
#define QUEUE_HWM            1000        // commands and replies queued, each way
//--- CURVE: ZeroMQ's authentication (ZAP) endpoint is fixed by the ZAP specification
#define ZAP_ENDPOINT         "inproc://zeromq.zap.01"
#define ZAP_DOMAIN           "solodesk"
#define Z85_KEY_LENGTH       40

//+------------------------------------------------------------------+
//| A reply being written, key after key: a Python literal (legacy:  |
//| single quotes, ", " and ": ", bare ticket keys) or compact JSON  |
//| (extended: ",", ":", ticket keys as strings).                    |
//+------------------------------------------------------------------+
class Reply
  {
private:
   bool              m_json;
   string            m_text;
   bool              m_empty[];    // per open container: nothing written in it yet
   int               m_depth;

   void              Separate(void);
   void              Key(const string key);
   void              Push(const string brace);
   void              Pop(const string brace);
   string            Quote(const string value) const;

public:
                     Reply(const bool json) : m_json(json), m_text(""), m_depth(0) {}
   bool              IsJson(void) const { return m_json; }
   string            Text(void) const { return m_text; }

   void              BeginObject(void);
   void              BeginObject(const string key);
   void              BeginTicket(const int ticket);
   void              EndObject(void) { Pop("}"); }
   void              BeginList(const string key);
   void              EndList(void)   { Pop("]"); }

   void              Str(const string key, const string value);
   void              Int(const string key, const long value);
   void              Num(const string key, const double value, const int digits);
   void              ItemStr(const string value);
  };
//+------------------------------------------------------------------+
void Reply::Separate(void)
  {
   if(m_depth == 0)
      return;
   if(!m_empty[m_depth - 1])
      StringAdd(m_text, m_json ? "," : ", ");
   m_empty[m_depth - 1] = false;
  }
//+------------------------------------------------------------------+
void Reply::Key(const string key)
  {
   Separate();
   StringAdd(m_text, Quote(key));
   StringAdd(m_text, m_json ? ":" : ": ");
  }
//+------------------------------------------------------------------+
void Reply::Push(const string brace)
  {
   StringAdd(m_text, brace);
   ArrayResize(m_empty, m_depth + 1);
   m_empty[m_depth] = true;
   m_depth++;
  }
//+------------------------------------------------------------------+
void Reply::Pop(const string brace)
  {
   if(m_depth > 0)
      m_depth--;
   StringAdd(m_text, brace);
  }
//+------------------------------------------------------------------+
void Reply::BeginObject(void)
  {
   Separate();
   Push("{");
  }
//+------------------------------------------------------------------+
void Reply::BeginObject(const string key)
  {
   Key(key);
   Push("{");
  }
//+------------------------------------------------------------------+
//| A ticket as a key: 51234567 in Python, "51234567" in JSON        |
//+------------------------------------------------------------------+
void Reply::BeginTicket(const int ticket)
  {
   Separate();
   string text = IntegerToString(ticket);
   StringAdd(m_text, m_json ? "\"" + text + "\"" : text);
   StringAdd(m_text, m_json ? ":" : ": ");
   Push("{");
  }
//+------------------------------------------------------------------+
void Reply::BeginList(const string key)
  {
   Key(key);
   Push("[");
  }
//+------------------------------------------------------------------+
void Reply::Str(const string key, const string value)
  {
   Key(key);
   StringAdd(m_text, Quote(value));
  }
//+------------------------------------------------------------------+
void Reply::Int(const string key, const long value)
  {
   Key(key);
   StringAdd(m_text, IntegerToString(value));
  }
//+------------------------------------------------------------------+
void Reply::Num(const string key, const double value, const int digits)
  {
   Key(key);
   StringAdd(m_text, FormatNumber(value, digits));
  }
//+------------------------------------------------------------------+
void Reply::ItemStr(const string value)
  {
   Separate();
   StringAdd(m_text, Quote(value));
  }
//+------------------------------------------------------------------+
//| Python: '...' with \\ and \' escaped, unprintable characters as  |
//| \n \r \t \xNN. JSON: "..." with \\ \" \b \f \n \r \t and \u00NN  |
//| below 0x20; other characters as they are (UTF-8 on the wire).    |
//+------------------------------------------------------------------+
string Reply::Quote(const string value) const
  {
   string out = m_json ? "\"" : "'";
   int length = StringLen(value);
   for(int i = 0; i < length; i++)
     {
      ushort c = StringGetCharacter(value, i);
      if(c == '\\')
         StringAdd(out, "\\\\");
      else if(!m_json && c == '\'')
         StringAdd(out, "\\'");
      else if(m_json && c == '"')
         StringAdd(out, "\\\"");
      else if(c == '\n')
         StringAdd(out, "\\n");
      else if(c == '\r')
         StringAdd(out, "\\r");
      else if(c == '\t')
         StringAdd(out, "\\t");
      else if(m_json && c == 0x08)
         StringAdd(out, "\\b");
      else if(m_json && c == 0x0C)
         StringAdd(out, "\\f");
      else if(c < 0x20)
         StringAdd(out, m_json ? StringFormat("\\u%04x", c) : StringFormat("\\x%02x", c));
      else if(!m_json && c == 0x7F)
         StringAdd(out, "\\x7f");
      else
         StringAdd(out, ShortToString(c));
     }
   StringAdd(out, m_json ? "\"" : "'");
   return out;
  }

//+------------------------------------------------------------------+
//| A reply number: rounded to `digits` decimals and written as      |
//| Python writes that float, the shortest form that reads back the  |
//| same: 1.06387, 1.064, 115.4, 0.01, 10000.0, 0.0 (never -0.0).    |
//+------------------------------------------------------------------+
string FormatNumber(const double value, const int digits)
  {
   int places = digits > 0 ? digits : 1;
   double rounded = NormalizeDouble(value, places);
   if(MathAbs(rounded) < 0.5 * MathPow(10.0, -places))
      rounded = 0.0;
   string text = DoubleToString(rounded, places);
   int length = StringLen(text);
   while(length > 2 && StringGetCharacter(text, length - 1) == '0'
         && StringGetCharacter(text, length - 2) != '.')
      length--;
   return StringSubstr(text, 0, length);
  }
//+------------------------------------------------------------------+
//| A published price: always `digits` decimals (1.06480, 115.160)   |
//+------------------------------------------------------------------+
string PriceText(const double value, const int digits)
  {
   return DoubleToString(value, digits);
  }

//+------------------------------------------------------------------+
//| The transport: a ZeroMQ context, the three sockets and, with     |
//| CURVE, the authentication handler. Made in OnInit once DLL calls |
//| are allowed; deleted in OnDeinit: sockets first, then context.   |
//+------------------------------------------------------------------+
class Bridge
  {
private:
   Context           m_context;
   Socket           *m_commands;
   Socket           *m_replies;
   Socket           *m_market;
   Socket           *m_zap;
   string            m_endpoints[3];
   bool              m_bound[3];
   string            m_allowed[];

   bool              Prepare(Socket *socket, const bool curve);
   bool              BindWithRetry(Socket *socket, const int index, const string endpoint);
   bool              AnswerZap(void);

public:
                     Bridge(void);
                    ~Bridge(void);
   bool              Start(const string &allowed[]);
   void              Stop(void);
   bool              Receive(string &text);
   bool              SendReply(const string text);
   bool              Publish(const string text);
   void              Authenticate(void);
  };
//+------------------------------------------------------------------+
Bridge::Bridge(void) : m_commands(NULL), m_replies(NULL), m_market(NULL), m_zap(NULL)
  {
   for(int i = 0; i < 3; i++)
     {
      m_endpoints[i] = "";
      m_bound[i] = false;
     }
  }
//+------------------------------------------------------------------+
Bridge::~Bridge(void)
  {
   Stop();
  }
//+------------------------------------------------------------------+
//| Every socket: linger 0 (closing the EA must never wait on a      |
//| client that went away), and the CURVE server role when keyed.    |
//+------------------------------------------------------------------+
bool Bridge::Prepare(Socket *socket, const bool curve)
  {
   if(CheckPointer(socket) == POINTER_INVALID || !socket.valid())
      return false;
   if(!socket.setLinger(0))
      return false;
   if(curve)
     {
      if(!socket.setZapDomain(ZAP_DOMAIN) || !socket.setCurveServer(true)
         || !socket.setCurveSecretKey(CurveServerSecretKey))
         return false;
     }
   return true;
  }
//+------------------------------------------------------------------+
//| A port closed by the previous run of the EA (a chart or input    |
//| change) is released by ZeroMQ's I/O thread a moment later:       |
//| try for a second before giving up.                               |
//+------------------------------------------------------------------+
bool Bridge::BindWithRetry(Socket *socket, const int index, const string endpoint)
  {
   for(int attempt = 0; attempt < 10 && !IsStopped(); attempt++)
     {
      if(socket.bind(endpoint))
        {
         m_endpoints[index] = endpoint;
         m_bound[index] = true;
         Print("bound ", endpoint);
         return true;
        }
      Sleep(100);
     }
   Print("cannot bind ", endpoint, ": ", Zmq::errorMessage(Zmq::errorNumber()),
         " (is the port used by another program, or the EA attached to two charts?)");
   return false;
  }
//+------------------------------------------------------------------+
//| Bind the sockets. With CURVE, the ZAP handler is bound first, so |
//| no client is admitted without its key being checked.             |
//+------------------------------------------------------------------+
bool Bridge::Start(const string &allowed[])
  {
   bool curve = (StringLen(CurveServerSecretKey) > 0);
   int count = ArraySize(allowed);
   ArrayResize(m_allowed, count);
   for(int i = 0; i < count; i++)
      m_allowed[i] = allowed[i];

   if(curve)
     {
      m_zap = new Socket(m_context, ZMQ_REP);
      if(!Prepare(m_zap, false) || !m_zap.bind(ZAP_ENDPOINT))
        {
         Print("cannot start the CURVE authentication handler: ",
               Zmq::errorMessage(Zmq::errorNumber()));
         return false;
        }
     }
   m_commands = new Socket(m_context, ZMQ_PULL);
   m_replies = new Socket(m_context, ZMQ_PUSH);
   m_market = new Socket(m_context, ZMQ_PUB);
   if(!Prepare(m_commands, curve) || !Prepare(m_replies, curve) || !Prepare(m_market, curve))
     {
      Print("cannot configure the sockets: ", Zmq::errorMessage(Zmq::errorNumber()));
      return false;
     }
   // Commands and replies are few: a bounded queue each way. Market data is a stream: a
   // subscriber that falls MarketDataHighWaterMark messages behind loses what it has not read
   // (PUB never blocks); in the extended dialect the sequence numbers tell it how much.
   if(!m_commands.setReceiveHighWaterMark(QUEUE_HWM) || !m_replies.setSendHighWaterMark(QUEUE_HWM)
      || !m_market.setSendHighWaterMark(MarketDataHighWaterMark))
     {
      Print("cannot set the high-water marks: ", Zmq::errorMessage(Zmq::errorNumber()));
      return false;
     }
   string base = Protocol + "://" + Host + ":";
   return BindWithRetry(m_commands, 0, base + IntegerToString(CommandPort))
          && BindWithRetry(m_replies, 1, base + IntegerToString(ReplyPort))
          && BindWithRetry(m_market, 2, base + IntegerToString(MarketDataPort));
  }
//+------------------------------------------------------------------+
//| Unbind and close every socket; safe to call more than once.      |
//+------------------------------------------------------------------+
void Bridge::Stop(void)
  {
   Socket *sockets[3];
   sockets[0] = m_commands;
   sockets[1] = m_replies;
   sockets[2] = m_market;
   for(int i = 0; i < 3; i++)
     {
      if(CheckPointer(sockets[i]) != POINTER_DYNAMIC)
         continue;
      if(m_bound[i] && !sockets[i].unbind(m_endpoints[i]))
         Print("unbind ", m_endpoints[i], ": ", Zmq::errorMessage(Zmq::errorNumber()));
      m_bound[i] = false;
      delete sockets[i];
     }
   m_commands = NULL;
   m_replies = NULL;
   m_market = NULL;
   if(CheckPointer(m_zap) == POINTER_DYNAMIC)
      delete m_zap;
   m_zap = NULL;
  }
//+------------------------------------------------------------------+
//| The next command, without waiting; false when none is queued.    |
//+------------------------------------------------------------------+
bool Bridge::Receive(string &text)
  {
   if(CheckPointer(m_commands) != POINTER_DYNAMIC)
      return false;
   ZmqMsg message;
   if(!m_commands.recv(message, true))
      return false;
   text = message.getData();
   return true;
  }
//+------------------------------------------------------------------+
//| Send a reply without blocking the terminal. With no client       |
//| connected it is dropped and logged: the desk reconciles.         |
//+------------------------------------------------------------------+
bool Bridge::SendReply(const string text)
  {
   if(CheckPointer(m_replies) != POINTER_DYNAMIC)
      return false;
   ZmqMsg message(text);
   if(m_replies.send(message, true))
      return true;
   Print("reply dropped (no client connected, or its queue is full): ", StringSubstr(text, 0, 120));
   return false;
  }
//+------------------------------------------------------------------+
bool Bridge::Publish(const string text)
  {
   if(CheckPointer(m_market) != POINTER_DYNAMIC)
      return false;
   ZmqMsg message(text);
   return m_market.send(message, true);
  }
//+------------------------------------------------------------------+
//| Answer the ZAP requests libzmq queued while clients performed    |
//| their CURVE handshake (a client waits for the answer).           |
//+------------------------------------------------------------------+
void Bridge::Authenticate(void)
  {
   if(CheckPointer(m_zap) != POINTER_DYNAMIC)
      return;
   int answered = 0;
   while(answered < 16 && AnswerZap())
      answered++;
  }
//+------------------------------------------------------------------+
//| One ZAP request (RFC 27): version, request id, domain, address,  |
//| routing id, mechanism, then for CURVE the client's 32-byte       |
//| public key. The answer: version, request id, status code, status |
//| text, user id, metadata. False when no request was waiting.      |
//+------------------------------------------------------------------+
bool Bridge::AnswerZap(void)
  {
   ZmqMsg first;
   if(!m_zap.recv(first, true))
      return false;
   uchar version[], requestId[], mechanism[], key[];
   first.getData(version);
   bool more = first.more();
   int index = 1;
   while(more)
     {
      ZmqMsg frame;                  // the rest of a multipart message is already here
      if(!m_zap.recv(frame))
         return false;
      more = frame.more();
      if(index == 1)
         frame.getData(requestId);
      else if(index == 5)
         frame.getData(mechanism);
      else if(index == 6)
         frame.getData(key);
      index++;
     }

   bool admitted = false;
   string status = "not a CURVE request";
   if(CharArrayToString(mechanism, 0, WHOLE_ARRAY, CP_UTF8) == "CURVE" && ArraySize(key) == 32)
     {
      string z85 = "";
      status = "client key not allowed";
      if(Z85::encode(z85, key))
        {
         for(int k = 0; k < ArraySize(m_allowed) && !admitted; k++)
            admitted = (m_allowed[k] == z85);
        }
      if(!admitted)
         Print("refused a client: its CURVE public key ", z85, " is not in CurveClientPublicKeys");
     }
   // The REP socket adds the envelope; the frames are sent in the order the request came in.
   m_zap.sendMore("1.0");
   m_zap.sendMore(requestId);
   m_zap.sendMore(admitted ? "200" : "400");
   m_zap.sendMore(admitted ? "OK" : status);
   m_zap.sendMore();                          // user id: empty
   m_zap.send();                              // metadata: empty, the last frame
   return true;
  }

//+------------------------------------------------------------------+
//| State                                                            |
//+------------------------------------------------------------------+
Bridge  *g_bridge = NULL;
ushort   g_semicolon = 0;
//--- SymbolMap: the desk's name -> the broker's name
string   g_mapDesk[];
string   g_mapBroker[];
//--- tracked quotes: the topic is the symbol as the desk named it
bool     g_quotesExtended = false;
string   g_quoteSymbol[];
string   g_quoteBroker[];
double   g_lastBid[];
double   g_lastAsk[];
long     g_quoteSeq[];
//--- tracked bars
bool     g_barsExtended = false;
string   g_barSymbol[];
string   g_barBroker[];
int      g_barTimeframe[];
datetime g_barOpen[];
long     g_barSeq[];

//+------------------------------------------------------------------+
//| Expert initialization                                            |
//+------------------------------------------------------------------+
int OnInit()
  {
   g_semicolon = StringGetCharacter(";", 0);
   if(!IsDllsAllowed())
     {
      Alert(BRIDGE_NAME, ": allow DLL imports (Tools > Options > Expert Advisors, and the EA's ",
            "Common tab): the bridge runs on libzmq.dll");
      return INIT_FAILED;
     }
   if(CommandPort <= 0 || ReplyPort <= 0 || MarketDataPort <= 0 || CommandPort == ReplyPort
      || ReplyPort == MarketDataPort || CommandPort == MarketDataPort)
     {
      Alert(BRIDGE_NAME, ": CommandPort, ReplyPort and MarketDataPort must be three different ports");
      return INIT_PARAMETERS_INCORRECT;
     }
   if(MaximumOrders < 0 || MaximumLotSize < 0.0 || Slippage < 0 || TimerMilliseconds < 1
      || MarketDataHighWaterMark < 0 || MagicNumber < 0)
     {
      Alert(BRIDGE_NAME, ": MaximumOrders, MaximumLotSize, MagicNumber, Slippage and ",
            "MarketDataHighWaterMark cannot be negative, TimerMilliseconds must be 1 or more");
      return INIT_PARAMETERS_INCORRECT;
     }
   if(!ParseSymbolMap(SymbolMap))
      return INIT_PARAMETERS_INCORRECT;

   string allowed[];
   bool curve = (StringLen(CurveServerSecretKey) > 0);
   if(curve)
     {
      if(!Zmq::hasCurve())
        {
         Alert(BRIDGE_NAME, ": this libzmq.dll has no CURVE support: install one built with ",
               "libsodium, or bind to 127.0.0.1 and leave the CURVE keys empty");
         return INIT_FAILED;
        }
      if(StringLen(CurveServerSecretKey) != Z85_KEY_LENGTH || !ParseKeys(CurveClientPublicKeys, allowed))
        {
         Alert(BRIDGE_NAME, ": CURVE keys are Z85 texts of 40 characters: set the EA's secret ",
               "key and at least one allowed client public key");
         return INIT_PARAMETERS_INCORRECT;
        }
     }
   else if(Host != "127.0.0.1" && Host != "localhost")
      Print("warning: listening on ", Host, " without CURVE: whoever reaches these ports can trade");

   g_bridge = new Bridge();
   if(!g_bridge.Start(allowed))
     {
      Shutdown();
      return INIT_FAILED;
     }
   if(!EventSetMillisecondTimer(TimerMilliseconds))
     {
      Print("cannot start the timer: error ", GetLastError());
      Shutdown();
      return INIT_FAILED;
     }
   Print(BRIDGE_NAME, " ", BRIDGE_VERSION, " ready: libzmq ", Zmq::getVersion(),
         ", CURVE ", curve ? "on" : "off", ", account ", AccountNumber(), " on ", AccountServer(),
         ", server time ", TimeToString(TimeCurrent(), TIME_DATE | TIME_SECONDS));
   return INIT_SUCCEEDED;
  }
//+------------------------------------------------------------------+
//| Expert deinitialization                                          |
//+------------------------------------------------------------------+
void OnDeinit(const int reason)
  {
   Shutdown();
   Print(BRIDGE_NAME, " stopped (reason ", reason, ")");
  }
//+------------------------------------------------------------------+
void Shutdown()
  {
   EventKillTimer();
   if(CheckPointer(g_bridge) == POINTER_DYNAMIC)
      delete g_bridge;
   g_bridge = NULL;
  }
//+------------------------------------------------------------------+
//| Market data goes out from the timer: OnTick only hears the       |
//| chart's own symbol.                                              |
//+------------------------------------------------------------------+
void OnTick()
  {
  }
//+------------------------------------------------------------------+
//| Timer: admit clients, answer commands, publish market data       |
//+------------------------------------------------------------------+
void OnTimer()
  {
   if(CheckPointer(g_bridge) != POINTER_DYNAMIC)
      return;
   g_bridge.Authenticate();
   string command = "";
   for(int i = 0; i < COMMANDS_PER_TIMER && !IsStopped(); i++)
     {
      if(!g_bridge.Receive(command))
         break;
      g_bridge.SendReply(Dispatch(command));
     }
   PublishQuotes();
   PublishBars();
  }

//+------------------------------------------------------------------+
//| Answer one command. A command that cannot be read (unknown verb, |
//| wrong field count, bad field) is answered BAD_COMMAND with its   |
//| first field as `_action`; each Command* function checks all its  |
//| fields before it writes anything, and returns false if one is    |
//| bad.                                                             |
//+------------------------------------------------------------------+
string Dispatch(const string text)
  {
   bool json = false;
   string requestId = "";
   string body = text;
   if(StringLen(text) > 0 && StringGetCharacter(text, 0) == '#')
     {
      int separator = StringFind(text, ";");
      requestId = separator > 0 ? StringSubstr(text, 1, separator - 1) : StringSubstr(text, 1);
      body = separator > 0 ? StringSubstr(text, separator + 1) : "";
      json = IsToken(requestId);     // an id that cannot be echoed gets a legacy answer
     }
   string fields[];
   int count = StringSplit(body, g_semicolon, fields);
   string verb = count > 0 ? fields[0] : "";

   Reply reply(json);
   reply.BeginObject();
   if(json)
      reply.Str("_request_id", requestId);
   bool readable = false;
   if(StringLen(text) > MAX_COMMAND_CHARS || (StringGetCharacter(text, 0) == '#' && !json))
      readable = false;
   else if(verb == "HEARTBEAT")
      readable = CommandHeartbeat(reply, count, fields);
   else if(verb == "TRADE")
      readable = CommandTrade(reply, fields, count);
   else if(verb == "HIST")
      readable = CommandHist(reply, fields, count);
   else if(verb == "TRACK_PRICES")
      readable = CommandTrackPrices(reply, fields, count);
   else if(verb == "TRACK_RATES")
      readable = CommandTrackRates(reply, fields, count);
   else if(verb == "HELLO" && json)
      readable = CommandHello(reply, fields, count);
   else if(verb == "GET_HISTORY" && json)
      readable = CommandGetHistory(reply, fields, count);
   if(!readable)
      ErrorFields(reply, StringSubstr(verb, 0, 32), CODE_BAD_COMMAND);
   reply.EndObject();
   return reply.Text();
  }
//+------------------------------------------------------------------+
//| {'_action': A, '_response': CODE, '_response_value': 'ERROR'}    |
//+------------------------------------------------------------------+
void ErrorFields(Reply &reply, const string action, const string code)
  {
   reply.Str("_action", action);
   reply.Str("_response", code);
   reply.Str("_response_value", "ERROR");
  }
//+------------------------------------------------------------------+
//| An MT4 error number as the code, its meaning in the journal      |
//+------------------------------------------------------------------+
void TradeError(Reply &reply, const string action, const int error)
  {
   Print(action, " failed: error ", error, " ", ErrorDescription(error));
   ErrorFields(reply, action, IntegerToString(error));
  }

//+------------------------------------------------------------------+
//| HEARTBEAT;                                                       |
//+------------------------------------------------------------------+
bool CommandHeartbeat(Reply &reply, const int count, const string &fields[])
  {
   if(count > 2 || (count == 2 && StringLen(fields[1]) > 0))
      return false;
   reply.Str("_action", "heartbeat");
   reply.Str("_response", "loud and clear!");
   return true;
  }

//+------------------------------------------------------------------+
//| #<id>;HELLO;<version>;<client id>: the version both speak, the   |
//| features, the server's time and UTC by this computer's clock     |
//| (TimeGMT): the desk reads the second on its clock setting and    |
//| refuses to trade when the two are more than a minute apart.      |
//+------------------------------------------------------------------+
bool CommandHello(Reply &reply, const string &fields[], const int count)
  {
   if(count != 3 || !IsInteger(fields[1]) || StringToInteger(fields[1]) < 1 || !IsToken(fields[2]))
      return false;
   long version = StringToInteger(fields[1]);
   reply.Str("_action", "HELLO");
   reply.Str("_response", "OK");
   reply.Int("_version", version < PROTOCOL_VERSION ? version : PROTOCOL_VERSION);
   reply.Str("_client_id", fields[2]);
   reply.BeginList("_features");
   reply.ItemStr("request_id");
   reply.ItemStr("json_replies");
   reply.ItemStr("sequence");
   if(PublishClosedBars)
      reply.ItemStr("closed_bars");
   reply.ItemStr("client_order_id");
   reply.ItemStr("trade_history");
   reply.EndList();
   reply.Str("_server_time", TimeToString(TimeCurrent(), TIME_DATE | TIME_SECONDS));
   reply.Str("_gmt_time", TimeToString(TimeGMT(), TIME_DATE | TIME_SECONDS));
   Print("extended dialect with client ", fields[2]);
   return true;
  }

//+------------------------------------------------------------------+
//| TRADE;ACTION;TYPE;SYMBOL;PRICE;SL;TP;COMMENT;LOTS;MAGIC;TICKET   |
//+------------------------------------------------------------------+
bool CommandTrade(Reply &reply, const string &fields[], const int count)
  {
   string action = count > 1 ? fields[1] : "";
   bool query = (action == "GET_OPEN_TRADES" || action == "GET_ACCOUNT_INFO");
   // The queries ignore the other fields: some legacy clients send "TRADE;GET_OPEN_TRADES".
   if(query && count != TRADE_FIELDS)
      return count >= 2 && Query(reply, action);
   if(count != TRADE_FIELDS || !CheckTradeFields(fields, reply.IsJson()))
      return false;
   if(query)
      return Query(reply, action);

   int    type = (int)StringToInteger(fields[2]);
   string symbol = BrokerSymbol(fields[3]);
   double price = StringToDouble(fields[4]);
   double slPoints = StringToDouble(fields[5]);
   double tpPoints = StringToDouble(fields[6]);
   string comment = fields[7];
   double lots = StringToDouble(fields[8]);
   int    magic = (int)StringToInteger(fields[9]);
   int    ticket = (int)StringToInteger(fields[10]);

   string name = TradeReplyAction(action);
   if(!IsConnected())
     {
      ErrorFields(reply, name, CODE_NO_CONNECTION);
      return true;
     }
   if(IsTradeContextBusy())
     {
      ErrorFields(reply, name, CODE_CONTEXT_BUSY);
      return true;
     }
   if(!IsTradeAllowed())
     {
      TradeError(reply, name, ERR_TRADE_NOT_ALLOWED);      // 4109: AutoTrading is off
      return true;
     }
   if(action == "OPEN")
      OpenOrder(reply, type, symbol, price, slPoints, tpPoints, comment, lots,
                magic != 0 ? magic : MagicNumber);
   else if(action == "MODIFY")
      ModifyOrder(reply, ticket, price, slPoints, tpPoints);
   else if(action == "CLOSE")
      CloseOrder(reply, ticket, 0.0);
   else if(action == "CLOSE_PARTIAL")
      CloseOrder(reply, ticket, lots);
   else if(action == "CLOSE_MAGIC")
      CloseOrders(reply, true, magic);
   else
      CloseOrders(reply, false, 0);
   return true;
  }
//+------------------------------------------------------------------+
bool Query(Reply &reply, const string action)
  {
   if(action == "GET_OPEN_TRADES")
      OpenTrades(reply);
   else
      AccountInformation(reply);
   return true;
  }
//+------------------------------------------------------------------+
//| The rules protocol.py's parse_command applies to a TRADE         |
//+------------------------------------------------------------------+
bool CheckTradeFields(const string &fields[], const bool extended)
  {
   string action = fields[1];
   if(action != "OPEN" && action != "MODIFY" && action != "CLOSE" && action != "CLOSE_PARTIAL"
      && action != "CLOSE_MAGIC" && action != "CLOSE_ALL" && action != "GET_OPEN_TRADES"
      && action != "GET_ACCOUNT_INFO")
      return false;
   if(!IsInteger(fields[2]) || StringToInteger(fields[2]) < OP_BUY || StringToInteger(fields[2]) > OP_SELLSTOP)
      return false;
   for(int i = 4; i <= 8; i++)                           // PRICE, SL, TP, LOTS: numbers >= 0
     {
      if(i == 7)
         continue;
      if(!IsDecimal(fields[i]) || StringToDouble(fields[i]) < 0.0)
         return false;
     }
   if(!IsInteger(fields[9]) || !IsInteger(fields[10]) || StringToInteger(fields[10]) < 0)
      return false;
   string symbol = fields[3];
   if(StringLen(symbol) > 0 ? !IsSymbol(symbol) : (action == "OPEN" || action == "MODIFY"))
      return false;
   string comment = fields[7];
   if(StringLen(comment) > MT4_COMMENT_MAX)
      return false;
   if(extended && action == "OPEN" && !IsClientOrderId(comment))
      return false;
   double lots = StringToDouble(fields[8]);
   if((action == "OPEN" || action == "CLOSE_PARTIAL") && lots <= 0.0)
      return false;
   return true;
  }
//+------------------------------------------------------------------+
//| `_action` of the reply to a TRADE action, success or failure     |
//+------------------------------------------------------------------+
string TradeReplyAction(const string action)
  {
   if(action == "OPEN")
      return "EXECUTION";
   if(action == "CLOSE_PARTIAL")
      return "CLOSE";
   if(action == "CLOSE_MAGIC")
      return "CLOSE_ALL_MAGIC";
   return action;                                          // MODIFY, CLOSE, CLOSE_ALL
  }

//+------------------------------------------------------------------+
//| TRADE;OPEN: SL and TP in points from the fill price, 0 for none. |
//| The EA's limits come first; then the broker's own checks.        |
//+------------------------------------------------------------------+
void OpenOrder(Reply &reply, const int type, const string symbol, const double requested,
               const double slPoints, const double tpPoints, const string comment,
               const double requestedLots, const int magic)
  {
   const string action = "EXECUTION";
   if(MaximumOrders > 0 && OrdersTotal() >= MaximumOrders)
     {
      Print("OPEN refused: ", OrdersTotal(), " orders open, MaximumOrders is ", MaximumOrders);
      ErrorFields(reply, action, CODE_MAX_ORDERS);
      return;
     }
   if(MaximumLotSize > 0.0 && requestedLots > MaximumLotSize + 1e-8)
     {
      Print("OPEN refused: ", DoubleToString(requestedLots, 2), " lots, MaximumLotSize is ",
            DoubleToString(MaximumLotSize, 2));
      ErrorFields(reply, action, CODE_MAX_LOTS);
      return;
     }
   if(!SymbolSelect(symbol, true))
     {
      TradeError(reply, action, ERR_UNKNOWN_SYMBOL);      // 4106
      return;
     }
   double lots = 0.0;
   int volumeError = NormalizeLots(symbol, requestedLots, lots);
   if(volumeError != 0)
     {
      TradeError(reply, action, volumeError);
      return;
     }
   int digits = (int)MarketInfo(symbol, MODE_DIGITS);
   bool market = (type == OP_BUY || type == OP_SELL);
   if(!market && requested <= 0.0)
     {
      TradeError(reply, action, ERR_INVALID_PRICE);      // 129: a pending order needs PRICE
      return;
     }
   // A market-execution (ECN) server refuses stops on a market order: send it bare, then
   // attach the stops at their distance from the price it was filled at.
   bool stopsAfter = market
                     && SymbolInfoInteger(symbol, SYMBOL_TRADE_EXEMODE) == SYMBOL_TRADE_EXECUTION_MARKET;

   int ticket = -1;
   int error = 0;
   for(int attempt = 0; attempt < RETRIES && ticket < 0 && !IsStopped(); attempt++)
     {
      if(!WaitForTradeContext())
        {
         ErrorFields(reply, action, CODE_CONTEXT_BUSY);
         return;
        }
      RefreshRates();
      double price = market ? MarketPrice(symbol, type, true) : NormalizeDouble(requested, digits);
      double sl = 0.0, tp = 0.0;
      if(!stopsAfter)
         StopsFromPoints(symbol, type, price, slPoints, tpPoints, sl, tp);
      ResetLastError();
      ticket = OrderSend(symbol, type, lots, price, Slippage, sl, tp, comment, magic, 0, clrNONE);
      if(ticket < 0)
        {
         error = GetLastError();
         Print("OrderSend ", symbol, " type ", type, " ", DoubleToString(lots, 2), " lots at ",
               DoubleToString(price, digits), ": error ", error, " ", ErrorDescription(error));
         if(!IsRetryable(error))
            break;
         Sleep(100);
        }
     }
   if(ticket < 0)
     {
      TradeError(reply, action, error != 0 ? error : ERR_COMMON_ERROR);
      return;
     }
   if(!OrderSelect(ticket, SELECT_BY_TICKET))
     {
      TradeError(reply, action, GetLastError());
      return;
     }
   if(stopsAfter && (slPoints > 0.0 || tpPoints > 0.0))
     {
      double sl = 0.0, tp = 0.0;
      StopsFromPoints(symbol, type, OrderOpenPrice(), slPoints, tpPoints, sl, tp);
      ResetLastError();
      if(!OrderModify(ticket, OrderOpenPrice(), sl, tp, 0, clrNONE))
        {
         int modifyError = GetLastError();
         // The order exists: report it as it is (its stops at 0); the desk reconciles.
         Print("ticket ", ticket, " is open without its stops: OrderModify error ", modifyError,
               " ", ErrorDescription(modifyError));
        }
      if(!OrderSelect(ticket, SELECT_BY_TICKET))
        {
         TradeError(reply, action, GetLastError());
         return;
        }
     }
   reply.Str("_action", action);
   reply.Int("_magic", OrderMagicNumber());
   reply.Int("_ticket", OrderTicket());
   reply.Str("_open_time", TimeToString(OrderOpenTime(), TIME_DATE | TIME_SECONDS));
   reply.Num("_open_price", OrderOpenPrice(), digits);
   reply.Num("_sl", OrderStopLoss(), digits);
   reply.Num("_tp", OrderTakeProfit(), digits);
  }

//+------------------------------------------------------------------+
//| TRADE;MODIFY: SL and TP in points from PRICE, or from the        |
//| order's open price when PRICE is 0; 0 points removes a stop.     |
//+------------------------------------------------------------------+
void ModifyOrder(Reply &reply, const int ticket, const double reference,
                 const double slPoints, const double tpPoints)
  {
   const string action = "MODIFY";
   if(!SelectOpenOrder(ticket))
     {
      TradeError(reply, action, ERR_INVALID_TICKET);     // 4108
      return;
     }
   string symbol = OrderSymbol();
   int type = OrderType();
   int digits = (int)MarketInfo(symbol, MODE_DIGITS);
   double openPrice = OrderOpenPrice();
   datetime expiration = OrderExpiration();
   double from = reference > 0.0 ? NormalizeDouble(reference, digits) : openPrice;
   double sl = 0.0, tp = 0.0;
   StopsFromPoints(symbol, type, from, slPoints, tpPoints, sl, tp);

   int error = 0;
   bool done = false;
   for(int attempt = 0; attempt < RETRIES && !done && !IsStopped(); attempt++)
     {
      if(!WaitForTradeContext())
        {
         ErrorFields(reply, action, CODE_CONTEXT_BUSY);
         return;
        }
      ResetLastError();
      done = OrderModify(ticket, openPrice, sl, tp, expiration, clrNONE);
      if(done)
         break;
      error = GetLastError();
      if(error == ERR_NO_RESULT)                // 1: the order has these stops already
         done = true;
      else if(IsRetryable(error))
         Sleep(100);
      else
         break;
     }
   if(!done)
     {
      TradeError(reply, action, error);
      return;
     }
   reply.Str("_action", action);
   reply.Int("_ticket", ticket);
   reply.Num("_sl", sl, digits);
   reply.Num("_tp", tp, digits);
  }

//+------------------------------------------------------------------+
//| TRADE;CLOSE (lots 0: all of it) and TRADE;CLOSE_PARTIAL          |
//+------------------------------------------------------------------+
void CloseOrder(Reply &reply, const int ticket, const double lots)
  {
   const string action = "CLOSE";
   if(!SelectOpenOrder(ticket))
     {
      TradeError(reply, action, ERR_INVALID_TICKET);     // 4108
      return;
     }
   string symbol = OrderSymbol();
   int digits = (int)MarketInfo(symbol, MODE_DIGITS);
   string kind = "";
   double price = 0.0, closed = 0.0;
   int error = CloseSelected(lots, kind, price, closed);
   if(error != 0)
     {
      TradeError(reply, action, error);
      return;
     }
   reply.Str("_action", action);
   reply.Int("_ticket", ticket);
   reply.Num("_close_price", price, digits);
   reply.Num("_close_lots", closed, LotDigits(symbol));
   reply.Str("_response", kind);
   reply.Str("_response_value", "SUCCESS");
  }
//+------------------------------------------------------------------+
//| Close (or delete) the selected order: `lots` 0, or at least the  |
//| order's, closes all of it. Returns 0 or an MT4 error number;     |
//| `kind` CLOSE_MARKET, CLOSE_PENDING or CLOSE_PARTIAL; a pending   |
//| order's `price` is its entry price. MT4 gives what a partial     |
//| close leaves a new ticket.                                       |
//+------------------------------------------------------------------+
int CloseSelected(const double lots, string &kind, double &price, double &closed)
  {
   int ticket = OrderTicket();
   string symbol = OrderSymbol();
   int type = OrderType();
   double orderLots = OrderLots();
   if(type > OP_SELL)
     {
      if(lots > 0.0 && lots < orderLots - 1e-8)
         return ERR_INVALID_TRADE_PARAMETERS;          // 3: no partial close of a pending order
      if(!WaitForTradeContext())
         return ERR_TRADE_CONTEXT_BUSY;                 // 146
      price = OrderOpenPrice();
      closed = orderLots;
      ResetLastError();
      if(!OrderDelete(ticket, clrNONE))
         return GetLastError();
      kind = "CLOSE_PENDING";
      return 0;
     }
   closed = orderLots;
   if(lots > 0.0 && lots < orderLots - 1e-8)
     {
      int volumeError = NormalizeLots(symbol, lots, closed);
      if(volumeError != 0)
         return volumeError;
      if(closed > orderLots)
         closed = orderLots;
     }
   kind = (closed < orderLots - 1e-8) ? "CLOSE_PARTIAL" : "CLOSE_MARKET";
   int error = 0;
   for(int attempt = 0; attempt < RETRIES && !IsStopped(); attempt++)
     {
      if(!WaitForTradeContext())
         return ERR_TRADE_CONTEXT_BUSY;
      RefreshRates();
      price = MarketPrice(symbol, type, false);
      ResetLastError();
      if(OrderClose(ticket, closed, price, Slippage, clrNONE))
        {
         if(OrderSelect(ticket, SELECT_BY_TICKET) && OrderClosePrice() > 0.0)
            price = OrderClosePrice();
         return 0;
        }
      error = GetLastError();
      Print("OrderClose ", ticket, " ", DoubleToString(closed, 2), " lots: error ", error, " ",
            ErrorDescription(error));
      if(!IsRetryable(error) || !SelectOpenOrder(ticket))
         break;
      Sleep(100);
     }
   return error != 0 ? error : ERR_COMMON_ERROR;
  }
//+------------------------------------------------------------------+
//| TRADE;CLOSE_MAGIC (the orders of one magic number) and           |
//| TRADE;CLOSE_ALL: `_responses` {ticket: outcome}, by ticket       |
//+------------------------------------------------------------------+
void CloseOrders(Reply &reply, const bool byMagic, const int magic)
  {
   int tickets[];
   // Tickets first, read backwards: each close shifts the positions of the orders after it.
   for(int i = OrdersTotal() - 1; i >= 0; i--)
     {
      if(!OrderSelect(i, SELECT_BY_POS, MODE_TRADES))
         continue;
      if(byMagic && OrderMagicNumber() != magic)
         continue;
      AppendInt(tickets, OrderTicket());
     }
   if(ArraySize(tickets) > 1)
      ArraySort(tickets);
   reply.Str("_action", byMagic ? "CLOSE_ALL_MAGIC" : "CLOSE_ALL");
   reply.BeginObject("_responses");
   for(int k = 0; k < ArraySize(tickets) && !IsStopped(); k++)
     {
      reply.BeginTicket(tickets[k]);
      if(!SelectOpenOrder(tickets[k]))
        {
         reply.Str("_response", IntegerToString(ERR_INVALID_TICKET));
         reply.Str("_response_value", "ERROR");
         reply.EndObject();
         continue;
        }
      string symbol = OrderSymbol();
      int orderMagic = OrderMagicNumber();
      string kind = "";
      double price = 0.0, closed = 0.0;
      int error = CloseSelected(0.0, kind, price, closed);
      if(error == 0)
        {
         reply.Str("_symbol", DeskSymbol(symbol));
         reply.Int("_magic", orderMagic);
         reply.Num("_close_price", price, (int)MarketInfo(symbol, MODE_DIGITS));
         reply.Num("_close_lots", closed, LotDigits(symbol));
         reply.Str("_response", kind);
         reply.Str("_response_value", "SUCCESS");
        }
      else
        {
         Print("CLOSE of ticket ", tickets[k], " failed: error ", error, " ", ErrorDescription(error));
         reply.Str("_response", IntegerToString(error));
         reply.Str("_response_value", "ERROR");
        }
      reply.EndObject();
     }
   reply.EndObject();
  }

//+------------------------------------------------------------------+
//| TRADE;GET_OPEN_TRADES: market and pending orders, by ticket      |
//+------------------------------------------------------------------+
void OpenTrades(Reply &reply)
  {
   int tickets[];
   for(int i = 0; i < OrdersTotal(); i++)
      if(OrderSelect(i, SELECT_BY_POS, MODE_TRADES))
         AppendInt(tickets, OrderTicket());
   if(ArraySize(tickets) > 1)
      ArraySort(tickets);
   reply.Str("_action", "OPEN_TRADES");
   reply.BeginObject("_trades");
   for(int k = 0; k < ArraySize(tickets); k++)
     {
      if(!OrderSelect(tickets[k], SELECT_BY_TICKET) || OrderCloseTime() != 0)
         continue;                                      // closed in between
      int digits = (int)MarketInfo(OrderSymbol(), MODE_DIGITS);
      reply.BeginTicket(tickets[k]);
      reply.Int("_magic", OrderMagicNumber());
      reply.Str("_symbol", DeskSymbol(OrderSymbol()));
      reply.Num("_lots", OrderLots(), LotDigits(OrderSymbol()));
      reply.Int("_type", OrderType());
      reply.Num("_open_price", OrderOpenPrice(), digits);
      reply.Str("_open_time", TimeToString(OrderOpenTime(), TIME_DATE | TIME_SECONDS));
      reply.Num("_SL", OrderStopLoss(), digits);
      reply.Num("_TP", OrderTakeProfit(), digits);
      reply.Num("_pnl", OrderProfit(), 2);
      reply.Str("_comment", OrderComment());
      reply.EndObject();
     }
   reply.EndObject();
  }

//+------------------------------------------------------------------+
//| TRADE;GET_ACCOUNT_INFO: `account_number` at the top, `_data` a   |
//| one-element list, `currenttime` the server's time to the minute  |
//+------------------------------------------------------------------+
void AccountInformation(Reply &reply)
  {
   reply.Str("_action", "GET_ACCOUNT_INFORMATION");
   reply.Int("account_number", AccountNumber());
   reply.BeginList("_data");
   reply.BeginObject();
   reply.Str("currenttime", TimeToString(TimeCurrent(), TIME_DATE | TIME_MINUTES));
   reply.Str("account_name", AccountName());
   reply.Num("account_balance", AccountBalance(), 2);
   reply.Num("account_equity", AccountEquity(), 2);
   reply.Num("account_profit", AccountProfit(), 2);
   reply.Num("account_free_margin", AccountFreeMargin(), 2);
   reply.Int("account_leverage", AccountLeverage());
   reply.EndObject();
   reply.EndList();
  }

//+------------------------------------------------------------------+
//| HIST;SYMBOL;TF_MINUTES;START;END: the bars whose open lies in    |
//| [START, END] on the broker clock, oldest first; none (or a       |
//| symbol the terminal does not know): NOT_AVAILABLE                |
//+------------------------------------------------------------------+
bool CommandHist(Reply &reply, const string &fields[], const int count)
  {
   datetime start = 0, end = 0;
   if(count != 5 || !IsSymbol(fields[1]) || ParseTimeframe(fields[2]) == 0
      || !ParseTime(fields[3], start) || !ParseTime(fields[4], end))
      return false;
   string desk = fields[1];
   string symbol = BrokerSymbol(desk);
   int timeframe = ParseTimeframe(fields[2]);
   MqlRates rates[];
   ArraySetAsSeries(rates, false);
   int copied = -1;
   if(end >= start && SymbolSelect(symbol, true))
     {
      // The terminal may still be loading this history from its server (4066): wait a little.
      for(int attempt = 0; attempt < 5 && !IsStopped(); attempt++)
        {
         ResetLastError();
         copied = CopyRates(symbol, (ENUM_TIMEFRAMES)timeframe, start, end, rates);
         if(copied >= 0 || GetLastError() != ERR_HISTORY_WILL_UPDATED)
            break;
         Sleep(200);
        }
     }
   reply.Str("_action", "HIST");
   reply.Str("_symbol", desk + "_" + TimeframeName(timeframe));
   if(copied <= 0)
     {
      reply.Str("_response", CODE_NOT_AVAILABLE);
      return true;
     }
   int digits = (int)MarketInfo(symbol, MODE_DIGITS);
   reply.BeginList("_data");
   for(int i = 0; i < copied; i++)
     {
      reply.BeginObject();
      reply.Str("time", TimeToString(rates[i].time, TIME_DATE | TIME_MINUTES));
      reply.Num("open", rates[i].open, digits);
      reply.Num("high", rates[i].high, digits);
      reply.Num("low", rates[i].low, digits);
      reply.Num("close", rates[i].close, digits);
      reply.Int("tick_volume", rates[i].tick_volume);
      reply.Int("spread", rates[i].spread);
      reply.Int("real_volume", rates[i].real_volume);
      reply.EndObject();
     }
   reply.EndList();
   return true;
  }

//+------------------------------------------------------------------+
//| TRACK_PRICES;SYM;SYM...: replaces the symbols whose quotes are   |
//| published (none: stop). The command's dialect is the dialect of  |
//| what is published; sequence numbers start again at 1.            |
//+------------------------------------------------------------------+
bool CommandTrackPrices(Reply &reply, const string &fields[], const int count)
  {
   for(int i = 1; i < count; i++)
      if(StringLen(fields[i]) > 0 && !IsSymbol(fields[i]))
         return false;
   string errors[];
   ArrayResize(g_quoteSymbol, 0);
   ArrayResize(g_quoteBroker, 0);
   ArrayResize(g_lastBid, 0);
   ArrayResize(g_lastAsk, 0);
   ArrayResize(g_quoteSeq, 0);
   g_quotesExtended = reply.IsJson();
   for(int i = 1; i < count; i++)
     {
      string desk = fields[i];
      if(StringLen(desk) == 0)
         continue;                                     // "TRACK_PRICES;" stops too
      string symbol = BrokerSymbol(desk);
      if(!SymbolSelect(symbol, true))
        {
         AppendString(errors, desk);
         continue;
        }
      int n = ArraySize(g_quoteSymbol);
      ArrayResize(g_quoteSymbol, n + 1);
      ArrayResize(g_quoteBroker, n + 1);
      ArrayResize(g_lastBid, n + 1);
      ArrayResize(g_lastAsk, n + 1);
      ArrayResize(g_quoteSeq, n + 1);
      g_quoteSymbol[n] = desk;
      g_quoteBroker[n] = symbol;
      g_lastBid[n] = 0.0;
      g_lastAsk[n] = 0.0;
      g_quoteSeq[n] = 0;
     }
   reply.Str("_action", "TRACK_PRICES");
   reply.BeginObject("_data");
   reply.Int("symbol_count", ArraySize(g_quoteSymbol));
   reply.BeginList("error_symbols");
   for(int k = 0; k < ArraySize(errors); k++)
      reply.ItemStr(errors[k]);
   reply.EndList();
   reply.EndObject();
   return true;
  }

//+------------------------------------------------------------------+
//| TRACK_RATES;SYM;TF;SYM;TF...: replaces the (symbol, timeframe)   |
//| pairs whose bars are published, from the next bar on.            |
//+------------------------------------------------------------------+
bool CommandTrackRates(Reply &reply, const string &fields[], const int count)
  {
   if(count % 2 == 0)
      return false;                                    // SYMBOL;TF_MINUTES pairs only
   for(int i = 1; i + 1 < count; i += 2)
      if(!IsSymbol(fields[i]) || ParseTimeframe(fields[i + 1]) == 0)
         return false;
   string errors[];
   ArrayResize(g_barSymbol, 0);
   ArrayResize(g_barBroker, 0);
   ArrayResize(g_barTimeframe, 0);
   ArrayResize(g_barOpen, 0);
   ArrayResize(g_barSeq, 0);
   g_barsExtended = reply.IsJson();
   for(int i = 1; i + 1 < count; i += 2)
     {
      string desk = fields[i];
      string symbol = BrokerSymbol(desk);
      int timeframe = ParseTimeframe(fields[i + 1]);
      if(!SymbolSelect(symbol, true))
        {
         AppendString(errors, desk);
         continue;
        }
      int n = ArraySize(g_barSymbol);
      ArrayResize(g_barSymbol, n + 1);
      ArrayResize(g_barBroker, n + 1);
      ArrayResize(g_barTimeframe, n + 1);
      ArrayResize(g_barOpen, n + 1);
      ArrayResize(g_barSeq, n + 1);
      g_barSymbol[n] = desk;
      g_barBroker[n] = symbol;
      g_barTimeframe[n] = timeframe;
      g_barOpen[n] = iTime(symbol, timeframe, 0);     // 0 while the history loads
      g_barSeq[n] = 0;
     }
   reply.Str("_action", "TRACK_RATES");
   reply.BeginObject("_data");
   reply.Int("instrument_count", ArraySize(g_barSymbol));
   reply.BeginList("error_symbols");
   for(int k = 0; k < ArraySize(errors); k++)
      reply.ItemStr(errors[k]);
   reply.EndList();
   reply.EndObject();
   return true;
  }

//+------------------------------------------------------------------+
//| #<id>;GET_HISTORY;START;END[;MAGIC]: market orders closed in     |
//| [START, END] (broker clock), by ticket; none: NOT_AVAILABLE.     |
//| The terminal holds only the period its Account History tab       |
//| shows: set it to All History.                                    |
//+------------------------------------------------------------------+
bool CommandGetHistory(Reply &reply, const string &fields[], const int count)
  {
   datetime start = 0, end = 0;
   if((count != 3 && count != 4) || !ParseTime(fields[1], start) || !ParseTime(fields[2], end)
      || (count == 4 && !IsInteger(fields[3])))
      return false;
   bool byMagic = (count == 4);
   int magic = byMagic ? (int)StringToInteger(fields[3]) : 0;
   int tickets[];
   for(int i = 0; i < OrdersHistoryTotal(); i++)
     {
      if(!OrderSelect(i, SELECT_BY_POS, MODE_HISTORY))
         continue;
      if(OrderType() > OP_SELL)
         continue;                                      // deleted pendings, balance entries
      if(byMagic && OrderMagicNumber() != magic)
         continue;
      if(OrderCloseTime() < start || OrderCloseTime() > end)
         continue;
      AppendInt(tickets, OrderTicket());
     }
   if(ArraySize(tickets) > 1)
      ArraySort(tickets);
   reply.Str("_action", "HISTORY");
   if(ArraySize(tickets) == 0)
     {
      reply.Str("_response", CODE_NOT_AVAILABLE);
      return true;
     }
   reply.BeginObject("_trades");
   for(int k = 0; k < ArraySize(tickets); k++)
     {
      if(!OrderSelect(tickets[k], SELECT_BY_TICKET, MODE_HISTORY))
         continue;
      int digits = (int)MarketInfo(OrderSymbol(), MODE_DIGITS);
      reply.BeginTicket(tickets[k]);
      reply.Int("_magic", OrderMagicNumber());
      reply.Str("_symbol", DeskSymbol(OrderSymbol()));
      reply.Num("_lots", OrderLots(), LotDigits(OrderSymbol()));
      reply.Int("_type", OrderType());
      reply.Num("_open_price", OrderOpenPrice(), digits);
      reply.Str("_open_time", TimeToString(OrderOpenTime(), TIME_DATE | TIME_SECONDS));
      reply.Num("_SL", OrderStopLoss(), digits);
      reply.Num("_TP", OrderTakeProfit(), digits);
      reply.Num("_pnl", OrderProfit(), 2);
      reply.Str("_comment", OrderComment());
      reply.Num("_close_price", OrderClosePrice(), digits);
      reply.Str("_close_time", TimeToString(OrderCloseTime(), TIME_DATE | TIME_SECONDS));
      reply.Num("_swap", OrderSwap(), 2);
      reply.Num("_commission", OrderCommission(), 2);
      reply.EndObject();
     }
   reply.EndObject();
   return true;
  }

//+------------------------------------------------------------------+
//| Quotes of the tracked symbols whose bid or ask changed:          |
//|   legacy   EURUSD:|:1.06379;1.06387                              |
//|   extended EURUSD:|:17:|:1.06379;1.06387                         |
//+------------------------------------------------------------------+
void PublishQuotes()
  {
   for(int i = 0; i < ArraySize(g_quoteSymbol); i++)
     {
      MqlTick tick;
      if(!SymbolInfoTick(g_quoteBroker[i], tick) || tick.bid <= 0.0 || tick.ask <= 0.0)
         continue;
      if(tick.bid == g_lastBid[i] && tick.ask == g_lastAsk[i])
         continue;
      g_lastBid[i] = tick.bid;
      g_lastAsk[i] = tick.ask;
      int digits = (int)MarketInfo(g_quoteBroker[i], MODE_DIGITS);
      string payload = PriceText(tick.bid, digits) + ";" + PriceText(tick.ask, digits);
      if(g_quotesExtended)
        {
         g_quoteSeq[i]++;
         g_bridge.Publish(g_quoteSymbol[i] + ":|:" + IntegerToString(g_quoteSeq[i]) + ":|:" + payload);
        }
      else
         g_bridge.Publish(g_quoteSymbol[i] + ":|:" + payload);
     }
  }
//+------------------------------------------------------------------+
//| When a tracked series opens a bar, publish it (the bar that has  |
//| just opened), in the extended dialect after the bar that has     |
//| just closed (PublishClosedBars):                                 |
//|   legacy   EURUSD_H1:|:time;open;high;low;close;tick_volume;     |
//|            spread;real_volume                                    |
//|   extended EURUSD_H1:|:SEQ:|:time;...;real_volume;closed (1/0)   |
//| time is an MT4 datetime: seconds since 1970 on the broker clock. |
//+------------------------------------------------------------------+
void PublishBars()
  {
   for(int i = 0; i < ArraySize(g_barSymbol); i++)
     {
      string symbol = g_barBroker[i];
      int timeframe = g_barTimeframe[i];
      datetime opened = iTime(symbol, timeframe, 0);
      if(opened == 0 || opened == g_barOpen[i])
         continue;
      MqlRates rates[];
      ArraySetAsSeries(rates, true);                    // [0] the new bar, [1] the one before
      int copied = CopyRates(symbol, (ENUM_TIMEFRAMES)timeframe, 0, 2, rates);
      if(copied < 1)
         continue;                                      // not loaded yet: next timer
      bool known = (g_barOpen[i] != 0);                 // false: the first bar seen
      g_barOpen[i] = opened;
      string topic = g_barSymbol[i] + "_" + TimeframeName(timeframe);
      int digits = (int)MarketInfo(symbol, MODE_DIGITS);
      if(!g_barsExtended)
        {
         g_bridge.Publish(topic + ":|:" + BarPayload(rates[0], digits));
         continue;
        }
      if(PublishClosedBars && known && copied > 1)
        {
         g_barSeq[i]++;
         g_bridge.Publish(topic + ":|:" + IntegerToString(g_barSeq[i]) + ":|:"
                          + BarPayload(rates[1], digits) + ";1");
        }
      g_barSeq[i]++;
      g_bridge.Publish(topic + ":|:" + IntegerToString(g_barSeq[i]) + ":|:"
                       + BarPayload(rates[0], digits) + ";0");
     }
  }
//+------------------------------------------------------------------+
string BarPayload(const MqlRates &bar, const int digits)
  {
   return IntegerToString((long)bar.time) + ";" + PriceText(bar.open, digits) + ";"
          + PriceText(bar.high, digits) + ";" + PriceText(bar.low, digits) + ";"
          + PriceText(bar.close, digits) + ";" + IntegerToString(bar.tick_volume) + ";"
          + IntegerToString(bar.spread) + ";" + IntegerToString(bar.real_volume);
  }

//+------------------------------------------------------------------+
//| Trading helpers                                                  |
//+------------------------------------------------------------------+
//| Select, by ticket, an order still open or pending                |
//+------------------------------------------------------------------+
bool SelectOpenOrder(const int ticket)
  {
   if(ticket <= 0 || !OrderSelect(ticket, SELECT_BY_TICKET))
      return false;
   return OrderCloseTime() == 0;
  }
//+------------------------------------------------------------------+
//| The price an order of `type` opens at (`opening`) or closes at   |
//+------------------------------------------------------------------+
double MarketPrice(const string symbol, const int type, const bool opening)
  {
   bool buy = (type == OP_BUY || type == OP_BUYLIMIT || type == OP_BUYSTOP);
   int digits = (int)MarketInfo(symbol, MODE_DIGITS);
   double price = (buy == opening) ? MarketInfo(symbol, MODE_ASK) : MarketInfo(symbol, MODE_BID);
   return NormalizeDouble(price, digits);
  }
//+------------------------------------------------------------------+
//| Stop loss and take profit `points` away from `price` (0: none)   |
//+------------------------------------------------------------------+
void StopsFromPoints(const string symbol, const int type, const double price,
                     const double slPoints, const double tpPoints, double &sl, double &tp)
  {
   bool buy = (type == OP_BUY || type == OP_BUYLIMIT || type == OP_BUYSTOP);
   double point = MarketInfo(symbol, MODE_POINT);
   int digits = (int)MarketInfo(symbol, MODE_DIGITS);
   sl = 0.0;
   tp = 0.0;
   if(slPoints > 0.0)
      sl = NormalizeDouble(buy ? price - slPoints * point : price + slPoints * point, digits);
   if(tpPoints > 0.0)
      tp = NormalizeDouble(buy ? price + tpPoints * point : price - tpPoints * point, digits);
  }
//+------------------------------------------------------------------+
//| Lots rounded to the symbol's step: 0, or 131 (ERR_INVALID_TRADE_ |
//| VOLUME) outside the broker's minimum and maximum                 |
//+------------------------------------------------------------------+
int NormalizeLots(const string symbol, const double requested, double &lots)
  {
   double step = MarketInfo(symbol, MODE_LOTSTEP);
   double minimum = MarketInfo(symbol, MODE_MINLOT);
   double maximum = MarketInfo(symbol, MODE_MAXLOT);
   if(step <= 0.0)
      step = 0.01;
   lots = NormalizeDouble(MathRound(requested / step) * step, LotDigits(symbol));
   if(lots <= 0.0 || lots < minimum - 1e-8 || (maximum > 0.0 && lots > maximum + 1e-8))
      return ERR_INVALID_TRADE_VOLUME;
   return 0;
  }
//+------------------------------------------------------------------+
//| Decimals of the symbol's lot step: 2 for 0.01, 3 for 0.001       |
//+------------------------------------------------------------------+
int LotDigits(const string symbol)
  {
   double step = MarketInfo(symbol, MODE_LOTSTEP);
   if(step <= 0.0)
      return 2;
   int decimals = (int)MathCeil(-MathLog10(step) - 1e-9);
   return decimals < 0 ? 0 : decimals;
  }
//+------------------------------------------------------------------+
//| Errors after which the server placed nothing: sending again is   |
//| safe. Not 128 (trade timeout), after which the order may exist:  |
//| the desk looks it up by comment and magic number first.          |
//+------------------------------------------------------------------+
bool IsRetryable(const int error)
  {
   return error == ERR_PRICE_CHANGED          // 135
          || error == ERR_OFF_QUOTES          // 136
          || error == ERR_REQUOTE             // 138
          || error == ERR_TRADE_CONTEXT_BUSY; // 146
  }
//+------------------------------------------------------------------+
//| Wait up to two seconds for another EA to release the trade       |
//| context                                                          |
//+------------------------------------------------------------------+
bool WaitForTradeContext()
  {
   uint started = GetTickCount();
   while(IsTradeContextBusy())
     {
      if(IsStopped() || GetTickCount() - started > 2000)
         return false;
      Sleep(20);
     }
   return true;
  }

//+------------------------------------------------------------------+
//| Symbols: the desk's names and the broker's                       |
//+------------------------------------------------------------------+
//| SymbolMap: "EURUSD=EURUSD.ecn,GBPUSD=GBPUSD.ecn"                 |
//+------------------------------------------------------------------+
bool ParseSymbolMap(const string text)
  {
   ArrayResize(g_mapDesk, 0);
   ArrayResize(g_mapBroker, 0);
   string pairs[];
   int count = StringSplit(text, StringGetCharacter(",", 0), pairs);
   for(int i = 0; i < count; i++)
     {
      string pair = Trim(pairs[i]);
      if(StringLen(pair) == 0)
         continue;
      int equals = StringFind(pair, "=");
      string desk = equals > 0 ? Trim(StringSubstr(pair, 0, equals)) : "";
      string broker = equals > 0 ? Trim(StringSubstr(pair, equals + 1)) : "";
      if(!IsSymbol(desk) || !IsSymbol(broker))
        {
         Alert(BRIDGE_NAME, ": SymbolMap entry '", pair, "' is not DESK=BROKER (EURUSD=EURUSD.ecn)");
         return false;
        }
      AppendString(g_mapDesk, desk);
      AppendString(g_mapBroker, broker);
     }
   return true;
  }
//+------------------------------------------------------------------+
string BrokerSymbol(const string desk)
  {
   for(int i = 0; i < ArraySize(g_mapDesk); i++)
      if(g_mapDesk[i] == desk)
         return g_mapBroker[i];
   return desk;
  }
//+------------------------------------------------------------------+
string DeskSymbol(const string broker)
  {
   for(int i = 0; i < ArraySize(g_mapBroker); i++)
      if(g_mapBroker[i] == broker)
         return g_mapDesk[i];
   return broker;
  }

//+------------------------------------------------------------------+
//| Reading fields (the rules of protocol.py)                        |
//+------------------------------------------------------------------+
//| Z85 public keys, comma-separated: false if one is malformed or   |
//| there is none                                                    |
//+------------------------------------------------------------------+
bool ParseKeys(const string text, string &keys[])
  {
   ArrayResize(keys, 0);
   string parts[];
   int count = StringSplit(text, StringGetCharacter(",", 0), parts);
   for(int i = 0; i < count; i++)
     {
      string key = Trim(parts[i]);
      if(StringLen(key) == 0)
         continue;
      if(StringLen(key) != Z85_KEY_LENGTH)
         return false;
      AppendString(keys, key);
     }
   return ArraySize(keys) > 0;
  }
//+------------------------------------------------------------------+
//| TF_MINUTES: an MT4 period in minutes (1 ... 43200); 0 otherwise  |
//+------------------------------------------------------------------+
int ParseTimeframe(const string text)
  {
   if(!IsDigits(text))
      return 0;
   int periods[9] = {PERIOD_M1, PERIOD_M5, PERIOD_M15, PERIOD_M30, PERIOD_H1, PERIOD_H4,
                     PERIOD_D1, PERIOD_W1, PERIOD_MN1};
   long minutes = StringToInteger(text);
   for(int i = 0; i < 9; i++)
      if(minutes == periods[i])
         return periods[i];
   return 0;
  }
//+------------------------------------------------------------------+
string TimeframeName(const int timeframe)
  {
   switch(timeframe)
     {
      case PERIOD_M1:
         return "M1";
      case PERIOD_M5:
         return "M5";
      case PERIOD_M15:
         return "M15";
      case PERIOD_M30:
         return "M30";
      case PERIOD_H1:
         return "H1";
      case PERIOD_H4:
         return "H4";
      case PERIOD_D1:
         return "D1";
      case PERIOD_W1:
         return "W1";
      case PERIOD_MN1:
         return "MN1";
     }
   return IntegerToString(timeframe);
  }
//+------------------------------------------------------------------+
//| YYYY.MM.DD, YYYY.MM.DD HH:MM or YYYY.MM.DD HH:MM:SS              |
//+------------------------------------------------------------------+
bool ParseTime(const string text, datetime &value)
  {
   int length = StringLen(text);
   if(length != 10 && length != 16 && length != 19)
      return false;
   string pattern = "dddd.dd.dd dd:dd:dd";
   for(int i = 0; i < length; i++)
     {
      ushort expected = StringGetCharacter(pattern, i);
      ushort c = StringGetCharacter(text, i);
      bool ok = (expected == 'd') ? (c >= '0' && c <= '9') : (c == expected);
      if(!ok)
         return false;
     }
   value = StringToTime(text);
   return value > 0;
  }
//+------------------------------------------------------------------+
//| [+-]?digits                                                      |
//+------------------------------------------------------------------+
bool IsInteger(const string text)
  {
   int length = StringLen(text);
   int start = 0;
   if(length > 0 && (StringGetCharacter(text, 0) == '-' || StringGetCharacter(text, 0) == '+'))
      start = 1;
   return length > start && IsDigits(StringSubstr(text, start));
  }
//+------------------------------------------------------------------+
bool IsDigits(const string text)
  {
   int length = StringLen(text);
   if(length == 0)
      return false;
   for(int i = 0; i < length; i++)
     {
      ushort c = StringGetCharacter(text, i);
      if(c < '0' || c > '9')
         return false;
     }
   return true;
  }
//+------------------------------------------------------------------+
//| [+-]?(digits[.digits*] | .digits)([eE][+-]?digits)?             |
//+------------------------------------------------------------------+
bool IsDecimal(const string text)
  {
   int length = StringLen(text);
   int i = 0;
   if(i < length && (StringGetCharacter(text, i) == '-' || StringGetCharacter(text, i) == '+'))
      i++;
   int before = 0, after = 0;
   while(i < length && StringGetCharacter(text, i) >= '0' && StringGetCharacter(text, i) <= '9')
     {
      before++;
      i++;
     }
   if(i < length && StringGetCharacter(text, i) == '.')
     {
      i++;
      while(i < length && StringGetCharacter(text, i) >= '0' && StringGetCharacter(text, i) <= '9')
        {
         after++;
         i++;
        }
     }
   if(before + after == 0)
      return false;
   if(i < length && (StringGetCharacter(text, i) == 'e' || StringGetCharacter(text, i) == 'E'))
     {
      i++;
      if(i < length && (StringGetCharacter(text, i) == '-' || StringGetCharacter(text, i) == '+'))
         i++;
      int exponent = 0;
      while(i < length && StringGetCharacter(text, i) >= '0' && StringGetCharacter(text, i) <= '9')
        {
         exponent++;
         i++;
        }
      if(exponent == 0)
         return false;
     }
   return i == length;
  }
//+------------------------------------------------------------------+
//| Request and client ids: 1 to 40 of A-Z a-z 0-9 _ . -             |
//+------------------------------------------------------------------+
bool IsToken(const string text)
  {
   return MadeOf(text, TOKEN_MAX, "_.-");
  }
//+------------------------------------------------------------------+
//| Symbols: 1 to 32 of A-Z a-z 0-9 _ . # + -                        |
//+------------------------------------------------------------------+
bool IsSymbol(const string text)
  {
   return MadeOf(text, SYMBOL_MAX, "_.#+-");
  }
//+------------------------------------------------------------------+
bool MadeOf(const string text, const int longest, const string extra)
  {
   int length = StringLen(text);
   if(length < 1 || length > longest)
      return false;
   for(int i = 0; i < length; i++)
     {
      ushort c = StringGetCharacter(text, i);
      bool letterOrDigit = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
      if(!letterOrDigit && StringFind(extra, ShortToString(c)) < 0)
         return false;
     }
   return true;
  }
//+------------------------------------------------------------------+
//| The desk's client order ids (core.ids.client_order_id):          |
//| "c" + yymmddHHMMSS + "-" + ten of 0-9 a-z, 24 characters         |
//+------------------------------------------------------------------+
bool IsClientOrderId(const string text)
  {
   if(StringLen(text) != CLIENT_ORDER_ID_LEN || StringGetCharacter(text, 0) != 'c'
      || StringGetCharacter(text, 13) != '-' || !IsDigits(StringSubstr(text, 1, 12)))
      return false;
   for(int i = 14; i < CLIENT_ORDER_ID_LEN; i++)
     {
      ushort c = StringGetCharacter(text, i);
      if(!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')))
         return false;
     }
   return true;
  }
//+------------------------------------------------------------------+
string Trim(const string text)
  {
   return StringTrimLeft(StringTrimRight(text));
  }
//+------------------------------------------------------------------+
void AppendString(string &items[], const string value)
  {
   int n = ArraySize(items);
   ArrayResize(items, n + 1);
   items[n] = value;
  }
//+------------------------------------------------------------------+
void AppendInt(int &items[], const int value)
  {
   int n = ArraySize(items);
   ArrayResize(items, n + 1);
   items[n] = value;
  }
//+------------------------------------------------------------------+
